-- Twilio's opt-out keywords (STOP and its synonyms, START to opt back in), as Twilio's
-- default Advanced Opt-Out handles them: the whole trimmed body, any case.
with

source as (

    select * from {{ source('twilio', 'twilio_inbound_messages') }}

),

renamed as (

    select
        -- ids
        message_sid as twilio_message_sid,

        -- strings
        payload ->> 'From' as from_phone,
        upper(trim(payload ->> 'Body')) as keyword,

        -- booleans
        upper(trim(payload ->> 'Body'))
            in ('STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT') as is_opt_out,
        upper(trim(payload ->> 'Body')) in ('START', 'YES', 'UNSTOP') as is_opt_in,

        -- timestamps
        received_at

    from source

)

select * from renamed
