{#- onboarding_audience's rows: every enrolled contact's, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro onboarding_audience_rows(changed=none) %}
with

enrollments as (

    select * from {{ ref('int_onboarding_enrollments') }}
    {{ where_contact_in(changed) }}

),

contacts as (

    select * from {{ ref('contacts') }}
    {{ where_contact_in(changed) }}

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
{% endmacro %}

{#- The contacts whose enrollment or contact row may have changed since `mark`. -#}
{% macro onboarding_inputs_loaded_since(mark) %}
    {{ contact_inputs_loaded_since(mark) }}
    union all
    {{ contacts_loaded_since(['stg_app__signups'], mark) }}
{% endmacro %}

{% macro onboarding_source_marks() %}
    {%- set marks = contact_source_marks() %}
    {%- do marks.update(source_deletion_marks([source('app', 'signups')])) %}
    {{- return(marks) }}
{% endmacro %}
