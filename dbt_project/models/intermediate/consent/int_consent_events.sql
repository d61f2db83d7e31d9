-- Every change of consent, from wherever it came: the CRM, an unsubscribe link, SendGrid
-- (unsubscribe, spam report, hard bounce), an SMS reply (STOP / START), or Twilio refusing a
-- send because the number opted out (error 21610). The newest change per contact and
-- channel decides (int_consents_pivoted_to_contacts). `loaded_at`: when the change reached the
-- warehouse, for the incremental builds of consent_history and contacts.
with

crm as (

    select
        contact_id,
        channel,
        is_opted_in,
        'crm_' || consent_source as consent_source,
        recorded_at as changed_at,
        loaded_at
    from {{ ref('stg_crm__consents') }}

),

links as (

    select
        contact_id,
        channel,
        false as is_opted_in,
        'unsubscribe_link' as consent_source,
        received_at as changed_at,
        received_at as loaded_at
    from {{ ref('stg_nurture__unsubscribe_requests') }}

),

email_events as (

    select
        ledger.contact_id,
        'email' as channel,
        events.event_name = 'group_resubscribe' as is_opted_in,
        case events.event_name
            when 'bounce' then 'hard_bounce'
            else events.event_name
        end as consent_source,
        events.occurred_at as changed_at,
        events.received_at as loaded_at
    from {{ ref('stg_sendgrid__events') }} as events
    -- The ledger is joined where it is used, not through a shared CTE: PostgreSQL would
    -- materialise a CTE used twice whole, and the dispatcher's per-chunk read of this view
    -- (a few thousand contacts) would scan the whole ledger each time.
    inner join {{ ref('stg_nurture__message_ledger') }} as ledger using (ledger_id)
    where events.is_consent_withdrawal or events.event_name = 'group_resubscribe'

),

phones as (

    select contact_id, phone from {{ ref('int_contacts_deduplicated') }}
    where phone is not null

),

sms_replies as (

    select
        phones.contact_id,
        'sms' as channel,
        replies.is_opt_in as is_opted_in,
        'sms_' || lower(replies.keyword) as consent_source,
        replies.received_at as changed_at,
        replies.received_at as loaded_at
    from {{ ref('stg_twilio__inbound_messages') }} as replies
    inner join phones on phones.phone = replies.from_phone
    where replies.is_opt_out or replies.is_opt_in

),

sms_refusals as (

    select
        contact_id,
        'sms' as channel,
        false as is_opted_in,
        'twilio_21610' as consent_source,
        updated_at as changed_at,
        updated_at as loaded_at
    from {{ ref('stg_nurture__message_ledger') }}
    where channel = 'sms' and state = 'failed' and reason like '%(error 21610)%'

),

unioned as (

    select * from crm
    union all select * from links
    union all select * from email_events
    union all select * from sms_replies
    union all select * from sms_refusals

)

select * from unioned
