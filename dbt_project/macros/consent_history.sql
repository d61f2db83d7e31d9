{#- consent_history's rows: every contact's, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro consent_history_rows(changed=none) %}
with

events as (

    select * from {{ ref('int_consent_events') }}
    {{ where_contact_in(changed) }}

),

ranked as (

    select
        contact_id,
        channel,
        is_opted_in,
        consent_source,
        changed_at,
        row_number() over (
            partition by contact_id, channel
            order by changed_at desc, is_opted_in asc
        ) = 1 as is_current
    from events

)

select * from ranked
{% endmacro %}
