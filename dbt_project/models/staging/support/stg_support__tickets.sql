select
    -- ids
    ticket_id,
    contact_id,

    -- strings
    subject,
    lower(status) as status,

    -- booleans
    closed_at is not null as is_closed,

    -- timestamps
    opened_at,
    closed_at,
    _loaded_at as loaded_at
from {{ source('support', 'support_tickets') }}
