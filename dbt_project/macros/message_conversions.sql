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
        coalesce(sends.template_version, 'none') as variant,
        -- the day it was sent; for a message not sent, the day it was decided
        cast(coalesce(sends.sent_at, sends.planned_at) at time zone 'UTC' as date)
            as message_date,
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
