-- A program's goal is reached once per contact and enrollment: more rows would count a
-- conversion twice in program_performance.
select program, contact_id, enrollment_id, count(*) as conversions
from {{ ref('int_program_conversions') }}
group by program, contact_id, enrollment_id
having count(*) > 1
