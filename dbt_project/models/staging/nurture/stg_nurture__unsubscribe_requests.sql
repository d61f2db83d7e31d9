select
    -- ids
    token_digest as unsubscribe_request_id,
    contact_id,

    -- strings
    channel,
    source as request_source,

    -- timestamps
    received_at
from {{ source('receiver', 'unsubscribe_requests') }}
