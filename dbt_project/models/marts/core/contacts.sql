with

contacts as (

    select * from {{ ref('int_contacts_deduplicated') }}

),

consents as (

    select * from {{ ref('int_consents_pivoted_to_contacts') }}

),

owners as (

    select user_id as owner_id, full_name as owner_name, email as owner_email
    from {{ ref('stg_crm__users') }}

),

activations as (

    select * from {{ ref('int_contact_activations') }}

),

final as (

    select
        contacts.contact_id,
        contacts.email,
        contacts.phone,
        contacts.first_name,
        contacts.last_name,
        contacts.time_zone,
        contacts.locale,
        contacts.lifecycle_stage,
        coalesce(consents.has_email_consent, false) as has_email_consent,
        coalesce(consents.has_sms_consent, false) as has_sms_consent,
        activations.activated_at is not null as is_activated,
        activations.activated_at,
        contacts.lifecycle_stage_changed_at,
        contacts.created_at,
        contacts.updated_at,
        greatest(contacts.loaded_at, activations.loaded_at) as source_loaded_at,
        contacts.owner_id,
        owners.owner_name,
        owners.owner_email
    from contacts
    left join consents using (contact_id)
    left join activations using (contact_id)
    left join owners using (owner_id)

)

select * from final
