{#- contacts' rows: every contact's, or those of the `changed` contacts (changed_contacts). -#}
{% macro contacts_rows(changed=none) %}
with

contacts as (

    select * from {{ ref('int_contacts_deduplicated') }}
    {{ where_contact_in(changed) }}

),

consents as (

    select * from {{ ref('int_consents_pivoted_to_contacts') }}
    {{ where_contact_in(changed) }}

),

owners as (

    select user_id as owner_id, full_name as owner_name, email as owner_email
    from {{ ref('stg_crm__users') }}

),

activations as (

    select * from {{ ref('int_contact_activations') }}
    {{ where_contact_in(changed) }}

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
{% endmacro %}

{#- The contacts whose row may have changed since `mark`: their consent, CRM row or
    activation, or their owner's name or address. -#}
{% macro contact_inputs_loaded_since(mark) %}
    {{ contacts_loaded_since(['int_consent_events', 'stg_crm__contacts',
                              'int_contact_activations'], mark) }}
    union all
    select contacts.contact_id
    from {{ ref('int_contacts_deduplicated') }} as contacts
    inner join {{ ref('stg_crm__users') }} as owners on owners.user_id = contacts.owner_id
    where owners.loaded_at > {{ mark }}
{% endmacro %}

{#- The deletion marks contacts follows: its sources', and for activations the marks
    int_contact_activations remembered (it counts every contact again after app events were
    erased, without a newer load time). -#}
{% macro contact_source_marks() %}
    {%- set marks = source_deletion_marks(consent_sources() + [source('crm', 'crm_users')]) %}
    {%- do marks.update(remembered_deletion_marks('int_contact_activations')) %}
    {{- return(marks) }}
{% endmacro %}
