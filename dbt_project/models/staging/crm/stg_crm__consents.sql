select
    -- ids
    consent_id,
    contact_id,

    -- strings
    lower(channel) as channel,
    lower(status) as status,
    source as consent_source,

    -- booleans
    lower(status) = 'opted_in' as is_opted_in,

    -- timestamps
    recorded_at,
    _loaded_at as loaded_at
from {{ source('crm', 'consents') }}
