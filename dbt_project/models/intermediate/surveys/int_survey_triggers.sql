-- Every milestone that earns a contact a satisfaction survey, and when the survey is due:
-- 30 days into onboarding, an hour after a support ticket closes, a day after a webinar
-- they attended. The once-per-90-days rule across triggers is the program's (once_per).
with

onboarding as (

    select
        contact_id,
        'onboarding_30d' as trigger,
        enrollment_id as trigger_source_id,
        enrolled_at + interval '30 days' as triggered_at
    from {{ ref('int_onboarding_enrollments') }}

),

tickets as (

    select
        contact_id,
        'ticket_closed' as trigger,
        ticket_id as trigger_source_id,
        closed_at + interval '1 hour' as triggered_at
    from {{ ref('stg_support__tickets') }}
    where is_closed

),

webinars as (

    select
        attendance.contact_id,
        'webinar_attended' as trigger,
        attendance.attendance_id as trigger_source_id,
        webinars.ends_at + interval '1 day' as triggered_at
    from {{ ref('stg_app__webinar_attendance') }} as attendance
    inner join {{ ref('stg_app__webinars') }} as webinars using (webinar_id)

),

unioned as (

    select * from onboarding
    union all select * from tickets
    union all select * from webinars

)

select
    'survey:' || trigger || ':' || trigger_source_id as trigger_id,
    *
from unioned
