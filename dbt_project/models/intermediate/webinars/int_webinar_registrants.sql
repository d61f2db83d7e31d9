-- Each contact's current registration per webinar (a re-registration after cancelling
-- replaces the cancelled one), with the seat Nurture allocated it, its place on the
-- waitlist, and attendance.
with

current_registrations as (

    -- The first of each contact's registrations to a webinar, ranked live before
    -- cancelled, then latest registered (an undated one as the latest), then highest id.
    -- A "none ranks before it" anti-join: through it PostgreSQL keeps the columns'
    -- statistics, so the audience view hashes these rows (30k at a million contacts), not
    -- its 700k members. Through `distinct on` it has none; after a row_number() = 1 filter
    -- it expects a handful of rows and joins by nested loops.
    select registrations.*
    from {{ ref('stg_app__webinar_registrations') }} as registrations
    where not exists (
        select from {{ ref('stg_app__webinar_registrations') }} as other
        where other.webinar_id = registrations.webinar_id
            and other.contact_id = registrations.contact_id
            and (registrations.is_cancelled, coalesce(other.registered_at, 'infinity'),
                 other.registration_id)
                > (other.is_cancelled, coalesce(registrations.registered_at, 'infinity'),
                   registrations.registration_id)
    )

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
