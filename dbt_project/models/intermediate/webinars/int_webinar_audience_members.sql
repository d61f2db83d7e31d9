-- Who the webinar audience is: one row per contact and webinar, for everyone a webinar is
-- for (invitations) and everyone registered in the last 60 days (confirmations, reminders,
-- follow-ups), with what their messages need of contact and webinar worked out once per
-- build. A table: working these rows out through their joins on every read (700k rows at a
-- million contacts) took most of the guard's and the plan's time. The audience view joins
-- the registrations and seats to it when read. The DAG builds it before each plan, as it
-- does the other audiences.
{{ config(
    materialized='table',
    indexes=[{'columns': ['contact_id', 'webinar_id']}],
) }}

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

invited as (

    -- Whether the invitation went out (one ledger row at most: its unique key).
    select contact_id, enrollment_id
    from {{ ref('stg_nurture__message_ledger') }}
    where program = 'webinar' and step = 'invitation' and state = 'sent'

),

zones as (

    select name as time_zone from pg_timezone_names

),

keys as (

    -- Invited, or registered and not among the invitees.
    select webinar_id, contact_id, true as is_invitee
    from invitees
    union all
    select webinar_id, contact_id, false as is_invitee
    from registrants
    where not exists (
        select from invitees
        where invitees.webinar_id = registrants.webinar_id
            and invitees.contact_id = registrants.contact_id
    )

),

-- The contacts and the invitation looked up before the webinars are joined, behind a
-- fence: PostgreSQL guesses the join with the 20 webinars keeps a tenth of the keys, and
-- for that few it would look each contact and invitation up by index (3x slower).
addressed as materialized (

    select
        keys.webinar_id,
        keys.contact_id,
        keys.is_invitee,
        contacts.email,
        contacts.phone,
        contacts.first_name,
        contacts.time_zone,
        contacts.locale,
        contacts.has_email_consent,
        contacts.has_sms_consent,
        contacts.source_loaded_at as contact_loaded_at,
        invited.contact_id is not null as was_invited
    from keys
    inner join contacts using (contact_id)
    left join invited
        on invited.contact_id = keys.contact_id
        and invited.enrollment_id = 'webinar:' || keys.webinar_id

),

members as (

    select
        addressed.*,
        webinars.webinar_title,
        webinars.starts_at,
        webinars.ends_at,
        webinars.webinar_time_zone,
        webinars.join_url,
        webinars.recording_url,
        webinars.loaded_at as webinar_loaded_at,
        -- The zone the start is shown in: the contact's, or the webinar's for an unknown one.
        coalesce(zones.time_zone, webinars.webinar_time_zone) as local_time_zone
    from addressed
    inner join webinars using (webinar_id)
    left join zones on zones.time_zone = addressed.time_zone

),

final as (

    select
        members.contact_id,
        'webinar:' || members.webinar_id as enrollment_id,
        members.webinar_id,
        members.webinar_title,
        members.starts_at,
        members.ends_at,
        members.webinar_time_zone,
        -- When it starts on the contact's clock (the webinar's own for an unknown zone).
        to_char(members.starts_at at time zone members.local_time_zone,
                'FMDay DD Mon YYYY, HH24:MI') || ' (' || members.local_time_zone || ')'
            as starts_at_local,
        -- The same as a wall-clock timestamp and its zone, for templates to word per locale.
        members.starts_at at time zone members.local_time_zone as local_start_time,
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
        greatest(members.webinar_loaded_at, members.contact_loaded_at) as source_loaded_at
    from members

)

select * from final
