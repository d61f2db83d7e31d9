select
    -- ids
    sg_event_id,
    payload ->> 'sg_message_id' as sendgrid_message_id,
    -- only Nurture's own messages carry a ledger id; other senders on the account don't
    case
        when payload ->> 'ledger_id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
            then (payload ->> 'ledger_id')::uuid
    end as ledger_id,

    -- strings
    lower(event) as event_name,
    payload ->> 'type' as bounce_type,
    payload ->> 'program' as program,
    payload ->> 'step' as step,

    -- booleans
    lower(event) in ('unsubscribe', 'group_unsubscribe', 'spamreport')
        or (lower(event) = 'bounce' and coalesce(payload ->> 'type', 'bounce') = 'bounce')
        as is_consent_withdrawal,

    -- timestamps
    to_timestamp((payload ->> 'timestamp')::bigint) as occurred_at,
    received_at
from {{ source('sendgrid', 'sendgrid_events') }}
