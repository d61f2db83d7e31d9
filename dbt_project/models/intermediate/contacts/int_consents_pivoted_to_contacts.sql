-- The newest consent change per contact and channel decides; no record means no consent.
-- On a tie the withdrawal wins: when in doubt, do not send.
with

consents as (

    select * from {{ ref('int_consent_events') }}

),

-- `distinct on`, not a row_number() = 1 filter, for the planner's row estimate (see
-- int_contacts_deduplicated).
latest as (

    select distinct on (contact_id, channel) *
    from consents
    order by contact_id, channel, changed_at desc, is_opted_in asc

),

pivoted as (

    select
        contact_id,
        bool_or(channel = 'email' and is_opted_in) as has_email_consent,
        bool_or(channel = 'sms' and is_opted_in) as has_sms_consent,
        max(changed_at) filter (where channel = 'email') as email_consent_changed_at,
        max(changed_at) filter (where channel = 'sms') as sms_consent_changed_at
    from latest
    group by contact_id

)

select * from pivoted
