-- The webinar program's audience: one row per contact and webinar, for everyone a webinar
-- is for (invitations) and everyone registered (confirmations, reminders, follow-ups).
-- A view: who is in it and what their messages need is a table built before each run
-- (int_webinar_audience_members); registrations, seats and attendance are read when it
-- is queried, so the seats the plan task allocates just before reading it are seen.
{{ config(materialized='view') }}

with

members as (

    select * from {{ ref('int_webinar_audience_members') }}

),

registrants as (

    select * from {{ ref('int_webinar_registrants') }}
    where registered_at > now() - interval '60 days'

),

final as (

    select
        members.contact_id,
        members.enrollment_id,
        members.webinar_id,
        members.webinar_title,
        members.starts_at,
        members.ends_at,
        members.webinar_time_zone,
        members.starts_at_local,
        members.local_start_time,
        members.local_time_zone,
        members.join_url,
        members.recording_url,
        members.email,
        members.phone,
        members.first_name,
        members.time_zone,
        members.locale,
        members.has_email_consent,
        members.has_sms_consent,
        members.is_invitee,
        members.was_invited,
        registrants.registration_id,
        registrants.registered_at,
        coalesce(not registrants.is_cancelled, false) as is_registered,
        registrants.seat_status,
        -- Seated on registration (confirmation) or from the waitlist (promotion).
        case when registrants.promoted_at is null then registrants.seated_at end
            as confirmed_at,
        registrants.waitlisted_at,
        registrants.waitlist_position,
        registrants.promoted_at,
        coalesce(registrants.is_seated, false) as is_seated,
        coalesce(not registrants.is_cancelled and registrants.seat_status = 'waitlisted', false)
            as is_waitlisted,
        coalesce(registrants.has_attended, false) as has_attended,
        -- Registered, not cancelled, seated (or registered before Nurture allocated seats),
        -- and never joined.
        coalesce(
            not registrants.is_cancelled
            and coalesce(registrants.seat_status, 'seated') = 'seated'
            and not registrants.has_attended,
            false
        ) as is_no_show,
        members.is_invitee and registrants.registration_id is null as is_invitable,
        members.was_invited and registrants.registration_id is null
            as is_unregistered_invitee,
        greatest(members.source_loaded_at, registrants.loaded_at) as source_loaded_at
    from members
    left join registrants using (webinar_id, contact_id)

)

select * from final
