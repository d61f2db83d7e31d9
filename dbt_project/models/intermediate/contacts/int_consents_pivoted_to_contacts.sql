-- The newest consent change per contact and channel decides; no record means no consent.
with

consents as (

    select * from {{ ref('stg_crm__consents') }}

),

latest as (

    select
        *,
        row_number() over (
            partition by contact_id, channel
            order by recorded_at desc, consent_id desc
        ) as recency_rank
    from consents

),

pivoted as (

    select
        contact_id,
        bool_or(channel = 'email' and is_opted_in) as has_email_consent,
        bool_or(channel = 'sms' and is_opted_in) as has_sms_consent,
        max(recorded_at) filter (where channel = 'email') as email_consent_changed_at,
        max(recorded_at) filter (where channel = 'sms') as sms_consent_changed_at,
        max(loaded_at) as loaded_at
    from latest
    where recency_rank = 1
    group by contact_id

)

select * from pivoted
