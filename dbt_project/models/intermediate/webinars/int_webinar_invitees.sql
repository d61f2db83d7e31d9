-- Who each upcoming webinar is for (contacts whose lifecycle stage it targets), but only
-- while a message to them can fall due: the invitation, sent 14 days before and open for
-- 2 days, and the last call to those it went to, 3 days before and open for a day — each
-- from a day ahead, so the frequency cap sees it coming (nurture.policies.LOOKAHEAD).
-- Between and after those windows nothing is owed to someone who has not registered, and
-- every contact × every upcoming webinar would be millions of rows. Registrants are in
-- the webinar audience whatever the window. The windows follow dags/webinar.py;
-- tests/test_webinars.py checks them against the program.
-- A table, built with the rest before each run, with what the audience needs of each
-- contact: the webinar audience (a view) is read by the guard and the plan, and joining
-- these rows to contacts each time costs more than all the rest.
{{ config(materialized='table', indexes=[{'columns': ['contact_id', 'webinar_id']}]) }}

with

webinars as (

    select
        *,
        starts_at between now() + interval '12 days' and now() + interval '15 days'
            as is_inviting,
        starts_at between now() + interval '2 days' and now() + interval '4 days'
            as is_calling_last
    from {{ ref('stg_app__webinars') }}

),

contacts as (

    select * from {{ ref('contacts') }}

),

invited as (

    select contact_id, enrollment_id
    from {{ ref('stg_nurture__message_ledger') }}
    where program = 'webinar' and step = 'invitation' and state = 'sent'

),

zones as (

    select name as time_zone from pg_timezone_names

),

targeted as (

    select
        webinars.webinar_id,
        webinars.is_inviting,
        webinars.webinar_time_zone,
        contacts.contact_id,
        contacts.email,
        contacts.phone,
        contacts.first_name,
        contacts.time_zone,
        contacts.locale,
        contacts.has_email_consent,
        contacts.has_sms_consent,
        contacts.source_loaded_at
    from webinars
    inner join contacts
        on contacts.lifecycle_stage = webinars.audience_stage
        or webinars.audience_stage = 'all'
    where webinars.is_inviting or webinars.is_calling_last

),

final as (

    select
        targeted.webinar_id,
        targeted.contact_id,
        targeted.email,
        targeted.phone,
        targeted.first_name,
        targeted.time_zone,
        targeted.locale,
        targeted.has_email_consent,
        targeted.has_sms_consent,
        -- The zone the start is shown in: the contact's, or the webinar's for an unknown one.
        coalesce(zones.time_zone, targeted.webinar_time_zone) as local_time_zone,
        targeted.source_loaded_at as contact_loaded_at
    from targeted
    left join zones on zones.time_zone = targeted.time_zone
    where targeted.is_inviting
        or exists (
            select from invited
            where invited.contact_id = targeted.contact_id
                and invited.enrollment_id = 'webinar:' || targeted.webinar_id
        )

)

select * from final
