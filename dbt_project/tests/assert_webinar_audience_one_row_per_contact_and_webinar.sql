-- The planner keys decisions by (contact, enrollment): a duplicate would double a message.
select contact_id, enrollment_id, count(*) as row_count
from {{ ref('webinar_audience') }}
group by contact_id, enrollment_id
having count(*) > 1
