select
    -- ids
    registration_id,
    webinar_id,
    contact_id,

    -- booleans
    cancelled_at is not null as is_cancelled,

    -- timestamps
    registered_at,
    cancelled_at,
    _loaded_at as loaded_at
from {{ source('app', 'webinar_registrations') }}
