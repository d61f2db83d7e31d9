-- Who each upcoming webinar is for (contacts whose lifecycle stage it targets), but only
-- while a message to them can fall due: the invitation, sent 14 days before and open for
-- 2 days, and the last call to those it went to, 3 days before and open for a day — each
-- from a day ahead, so the frequency cap sees it coming (nurture.policies.LOOKAHEAD).
-- Between and after those windows nothing is owed to someone who has not registered, and
-- every contact × every upcoming webinar would be millions of rows. Registrants are in
-- the webinar audience whatever the window. The windows follow dags/webinar.py;
-- tests/test_webinars.py checks them against the program.
-- Only who: int_webinar_audience_members adds what their messages need.
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

targeted as (

    select
        webinars.webinar_id,
        webinars.is_inviting,
        contacts.contact_id
    from webinars
    inner join contacts
        on contacts.lifecycle_stage = webinars.audience_stage
        or webinars.audience_stage = 'all'
    where webinars.is_inviting or webinars.is_calling_last

),

final as (

    select
        targeted.webinar_id,
        targeted.contact_id
    from targeted
    where targeted.is_inviting
        or exists (
            select from invited
            where invited.contact_id = targeted.contact_id
                and invited.enrollment_id = 'webinar:' || targeted.webinar_id
        )

)

select * from final
