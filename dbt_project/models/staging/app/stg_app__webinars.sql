select
    -- ids
    webinar_id,

    -- strings
    title as webinar_title,
    time_zone as webinar_time_zone,
    lower(audience_stage) as audience_stage,
    join_url,
    recording_url,

    -- numerics
    capacity,
    duration_minutes,

    -- timestamps
    starts_at,
    starts_at + duration_minutes * interval '1 minute' as ends_at,
    _loaded_at as loaded_at
from {{ source('app', 'webinars') }}
