-- The newest consent change per contact and channel decides; no record means no consent.
-- On a tie the withdrawal wins: when in doubt, do not send.
with

consents as (

    select * from {{ ref('int_consent_events') }}

),

latest as (

    select
        *,
        row_number() over (
            partition by contact_id, channel
            order by changed_at desc, is_opted_in asc
        ) as recency_rank
    from consents

),

pivoted as (

    select
        contact_id,
        bool_or(channel = 'email' and is_opted_in) as has_email_consent,
        bool_or(channel = 'sms' and is_opted_in) as has_sms_consent,
        max(changed_at) filter (where channel = 'email') as email_consent_changed_at,
        max(changed_at) filter (where channel = 'sms') as sms_consent_changed_at
    from latest
    where recency_rank = 1
    group by contact_id

)

select * from pivoted
