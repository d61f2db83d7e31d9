-- Every consent change per contact and channel with its source and time; `is_current`
-- marks the change that decides today's consent (the same rule contacts applies).
with

events as (

    select * from {{ ref('int_consent_events') }}

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
