-- Each contact's current registration per webinar (a re-registration after cancelling
-- replaces the cancelled one), with the seat Nurture allocated it, its place on the
-- waitlist, and attendance.
with

current_registrations as (

    -- `distinct on` rather than a row_number() = 1 filter, which PostgreSQL estimates at a
    -- handful of rows: the audience view and its test then joined it by nested loops.
    select distinct on (webinar_id, contact_id) *
    from {{ ref('stg_app__webinar_registrations') }}
    order by webinar_id, contact_id, is_cancelled asc, registered_at desc, registration_id desc

),

seats as (

    select * from {{ ref('stg_nurture__webinar_seats') }}

),

attendance as (

    select * from {{ ref('stg_app__webinar_attendance') }}

),

joined as (

    select
        current_registrations.registration_id,
        current_registrations.webinar_id,
        current_registrations.contact_id,
        current_registrations.registered_at,
        current_registrations.is_cancelled,
        seats.seat_status,
        seats.seated_at,
        seats.waitlisted_at,
        seats.promoted_at,
        attendance.joined_at,
        attendance.minutes_attended,
        current_registrations.loaded_at
    from current_registrations
    left join seats using (registration_id)
    left join attendance
        on attendance.webinar_id = current_registrations.webinar_id
        and attendance.contact_id = current_registrations.contact_id

),

final as (

    select
        *,
        not is_cancelled and seat_status = 'seated' as is_seated,
        case when not is_cancelled and seat_status = 'waitlisted' then
            row_number() over (
                partition by webinar_id, (not is_cancelled and seat_status = 'waitlisted')
                order by registered_at, registration_id
            )
        end as waitlist_position,
        joined_at is not null as has_attended
    from joined

)

select * from final
