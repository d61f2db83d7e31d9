select
    -- ids
    event_id,
    contact_id,

    -- strings
    lower(event_name) as event_name,

    -- timestamps
    occurred_at,
    _loaded_at as loaded_at
from {{ source('app', 'events') }}
