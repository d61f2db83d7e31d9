select
    -- ids
    registration_id,
    webinar_id,
    contact_id,

    -- strings
    seat_status,

    -- timestamps
    seated_at,
    waitlisted_at,
    promoted_at,
    released_at
from {{ source('nurture', 'webinar_seats') }}
