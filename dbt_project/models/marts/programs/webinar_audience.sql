-- The webinar program's audience: one row per contact and webinar, for everyone a webinar
-- is for (invitations) and everyone registered (confirmations, reminders, follow-ups).
-- A view, so the seats the plan task allocates just before reading it are seen at once.
{{ config(materialized='view') }}

with

webinars as (

    select * from {{ ref('stg_app__webinars') }}

),

invitees as not materialized (

    select * from {{ ref('int_webinar_invitees') }}

),

registrants as (

    select * from {{ ref('int_webinar_registrants') }}
    where registered_at > now() - interval '60 days'

),

contacts as (

    select * from {{ ref('contacts') }}

),

ledger as (

    select * from {{ ref('stg_nurture__message_ledger') }}

),

zones as (

    select name as time_zone from pg_timezone_names

),

registrant_rows as (

    -- Registered, and not among the invitees (who come with their contact's columns).
    select
        registrants.webinar_id,
        registrants.contact_id,
        false as is_invitee,
        contacts.email,
        contacts.phone,
        contacts.first_name,
        contacts.time_zone,
        contacts.locale,
        contacts.has_email_consent,
        contacts.has_sms_consent,
        coalesce(zones.time_zone, webinars.webinar_time_zone) as local_time_zone,
        contacts.source_loaded_at as contact_loaded_at
    from registrants
    inner join webinars using (webinar_id)
    inner join contacts using (contact_id)
    left join zones on zones.time_zone = contacts.time_zone
    where not exists (
        select from invitees
        where invitees.webinar_id = registrants.webinar_id
            and invitees.contact_id = registrants.contact_id
    )

),

audience_rows as (

    select
        webinar_id,
        contact_id,
        true as is_invitee,
        email,
        phone,
        first_name,
        time_zone,
        locale,
        has_email_consent,
        has_sms_consent,
        local_time_zone,
        contact_loaded_at
    from invitees
    union all
    select * from registrant_rows

),

invitations as (

    -- Whether the invitation went out (one ledger row at most: its unique key).
    select
        audience_rows.*,
        exists (
            select from ledger
            where ledger.program = 'webinar' and ledger.step = 'invitation'
                and ledger.contact_id = audience_rows.contact_id
                and ledger.enrollment_id = 'webinar:' || audience_rows.webinar_id
                and ledger.state = 'sent'
        ) as was_invited
    from audience_rows

),

final as (

    select
        invitations.contact_id,
        'webinar:' || invitations.webinar_id as enrollment_id,
        invitations.webinar_id,
        webinars.webinar_title,
        webinars.starts_at,
        webinars.ends_at,
        webinars.webinar_time_zone,
        -- When it starts on the contact's clock (the webinar's own for an unknown zone).
        to_char(webinars.starts_at at time zone invitations.local_time_zone,
                'FMDay DD Mon YYYY, HH24:MI') || ' (' || invitations.local_time_zone || ')'
            as starts_at_local,
        -- The same as a wall-clock timestamp and its zone, for templates to word per locale.
        webinars.starts_at at time zone invitations.local_time_zone as local_start_time,
        invitations.local_time_zone,
        webinars.join_url,
        webinars.recording_url,
        invitations.email,
        invitations.phone,
        invitations.first_name,
        invitations.time_zone,
        invitations.locale,
        invitations.has_email_consent,
        invitations.has_sms_consent,
        invitations.is_invitee,
        invitations.was_invited,
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
        invitations.is_invitee and registrants.registration_id is null as is_invitable,
        invitations.was_invited and registrants.registration_id is null
            as is_unregistered_invitee,
        greatest(webinars.loaded_at, registrants.loaded_at, invitations.contact_loaded_at)
            as source_loaded_at
    from invitations
    inner join webinars using (webinar_id)
    left join registrants using (webinar_id, contact_id)

)

select * from final
