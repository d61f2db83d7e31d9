{#- int_message_conversions' rows: every message's, or those of the messages loaded since
    `mark` and of the `changed` contacts (changed_contacts). -#}
{% macro message_conversion_rows(mark=none, changed=none) %}
with

sends as (

    select * from {{ ref('message_sends') }}
    {%- if mark is not none and changed is not none %}
    -- each found through its own index
    where source_loaded_at > {{ mark }} or contact_id = any({{ changed }})
    {%- endif %}

),

conversions as (

    select * from {{ ref('int_program_conversions') }}

),

final as (

    select
        sends.ledger_id,
        sends.program,
        sends.step,
        sends.channel,
        {{ message_variant('sends') }} as variant,
        {{ message_date('sends') }} as message_date,
        sends.contact_id,
        sends.state,
        sends.reason,
        sends.was_sent,
        sends.was_delivered,
        sends.was_opened,
        sends.was_clicked,
        sends.was_bounced,
        sends.was_unsubscribed,
        sends.due_at,
        sends.sent_at,
        conversions.converted_at
    from sends
    left join conversions using (program, contact_id, enrollment_id)

)

select * from final
{% endmacro %}

{#- int_program_contact_outcomes' rows: every contact's, or those of the `changed`
    contacts (changed_contacts). -#}
{% macro program_contact_outcome_rows(changed=none) %}
select
    program,
    contact_id,
    -- Held out of the program once held out of any message: a transactional message
    -- (a webinar confirmation) may still reach them. Converted when an enrollment reached
    -- the goal at or after its first due message, which is when it did so after any of its
    -- messages' due times: no per-enrollment step over millions of messages.
    coalesce(bool_or(reason = 'held_out'), false) as is_held_out,
    coalesce(bool_or(converted_at >= due_at), false) as has_converted
from {{ ref('int_message_conversions') }}
where (state = 'sent' or reason = 'held_out') {{ and_contact_in(changed) }}
group by program, contact_id
{% endmacro %}

{#- The contacts whose messages or conversions may have changed since `mark`: a message
    loaded into message_sends since, or the conversions' inputs. -#}
{% macro message_conversion_inputs_loaded_since(mark) %}
    select contact_id from {{ ref('message_sends') }} where source_loaded_at > {{ mark }}
    union all
    {{ conversion_inputs_loaded_since(mark) }}
{% endmacro %}

{#- A message's variant: the template version sent, 'none' when nothing was rendered. -#}
{% macro message_variant(sends) -%}
    coalesce({{ sends }}.template_version, 'none')
{%- endmacro %}

{#- A message's UTC day: when it was sent; for a message not sent, when it was decided. -#}
{% macro message_date(sends) -%}
    cast(coalesce({{ sends }}.sent_at, {{ sends }}.planned_at) at time zone 'UTC' as date)
{%- endmacro %}
