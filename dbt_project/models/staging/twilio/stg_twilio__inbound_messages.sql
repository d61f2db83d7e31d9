-- Twilio's opt-out keywords (STOP and its synonyms, OPTOUT and REVOKE since May 2025;
-- START to opt back in), as Twilio's default Advanced Opt-Out handles them: the whole body
-- trimmed of white space (line breaks too), any case.
select
    -- ids
    message_sid as twilio_message_sid,

    -- strings
    payload ->> 'From' as from_phone,
    body_keyword as keyword,

    -- booleans
    body_keyword in (
        'STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'OPTOUT', 'REVOKE'
    ) as is_opt_out,
    body_keyword in ('START', 'YES', 'UNSTOP') as is_opt_in,

    -- timestamps
    received_at
from (
    select *, upper(btrim(payload ->> 'Body', E' \t\r\n')) as body_keyword
    from {{ source('twilio', 'twilio_inbound_messages') }}
) as bodies
