select
    -- ids
    message_sid as twilio_message_sid,

    -- strings
    lower(message_status) as message_status,
    nullif(payload ->> 'ErrorCode', '') as error_code,

    -- timestamps
    received_at
from {{ source('twilio', 'twilio_status_callbacks') }}
