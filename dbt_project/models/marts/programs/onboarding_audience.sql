-- Everyone who entered onboarding, with what the planner needs to decide each step.
-- Contacts without consent or with bad addresses stay in: the planner records why it
-- sends them nothing.

-- Indexed by contact: the plan reads it in contact order, the dispatcher a batch's contacts.
{{ config(indexes=[{'columns': ['contact_id']}]) }}

with

enrollments as (

    select * from {{ ref('int_onboarding_enrollments') }}

),

contacts as (

    select * from {{ ref('contacts') }}

),

final as (

    select
        enrollments.contact_id,
        enrollments.enrollment_id,
        enrollments.entry_source,
        enrollments.enrolled_at,
        contacts.email,
        contacts.phone,
        contacts.first_name,
        contacts.time_zone,
        contacts.locale,
        contacts.has_email_consent,
        contacts.has_sms_consent,
        contacts.is_activated,
        contacts.activated_at,
        greatest(enrollments.loaded_at, contacts.source_loaded_at) as source_loaded_at
    from enrollments
    inner join contacts using (contact_id)

)

select * from final
