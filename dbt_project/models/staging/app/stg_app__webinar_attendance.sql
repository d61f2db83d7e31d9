-- A contact may join, drop and rejoin: the first join and the total minutes count.
select
    -- ids
    webinar_id || ':' || contact_id as attendance_id,
    webinar_id,
    contact_id,

    -- numerics
    sum(minutes_attended) as minutes_attended,

    -- timestamps
    min(joined_at) as joined_at,
    max(_loaded_at) as loaded_at
from {{ source('app', 'webinar_attendance') }}
group by webinar_id, contact_id
