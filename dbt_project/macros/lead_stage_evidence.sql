{#- int_lead_stage_evidence's rows: every contact's, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro lead_stage_evidence_rows(changed=none) %}
with

contacts as (

    select contact_id, lifecycle_stage, lifecycle_stage_changed_at
    from {{ ref('int_contacts_deduplicated') }}
    {{ where_contact_in(changed) }}

),

form_fills as (

    select contact_id, min(filled_at) as first_filled_at
    from {{ ref('stg_web__form_fills') }}
    {{ where_contact_in(changed) }}
    group by contact_id

),

profiles as (

    select contact_id, submitted_at
    from {{ ref('stg_web__lead_profiles') }}
    {{ where_contact_in(changed) }}

),

feedback as (

    select
        contact_id,
        min(recorded_at) as first_sales_feedback_at,
        min(recorded_at) filter (where outcome = 'accepted') as accepted_at,
        min(recorded_at) filter (where outcome in ('won', 'lost')) as closed_at,
        min(recorded_at) filter (where outcome = 'won') as won_at,
        max(recorded_at) filter (where outcome = 'rejected') as rejected_at,
        max(recorded_at) filter (where outcome = 'recycled') as recycled_at,
        max(recorded_at) filter (where outcome = 'lost') as lost_at
    from {{ ref('stg_crm__sales_feedback') }}
    {{ where_contact_in(changed) }}
    group by contact_id

),

latest_feedback as (

    select distinct on (contact_id)
        contact_id,
        outcome as latest_sales_outcome,
        recorded_at as latest_sales_outcome_at
    from {{ ref('stg_crm__sales_feedback') }}
    {{ where_contact_in(changed) }}
    order by contact_id, recorded_at desc, feedback_id desc

),

rejections as (

    select distinct on (contact_id)
        contact_id,
        reason as rejection_reason
    from {{ ref('stg_crm__sales_feedback') }}
    where outcome = 'rejected' {{ and_contact_in(changed) }}
    order by contact_id, recorded_at desc, feedback_id desc

),

final as (

    -- The CRM exports only the current stage with its change time, so a stage's time comes
    -- from the CRM when the contact is in it now, else from the forms and sales feedback.
    select
        contacts.contact_id,
        contacts.lifecycle_stage as crm_lifecycle_stage,
        least(
            case when contacts.lifecycle_stage = 'lead' then contacts.lifecycle_stage_changed_at end,
            profiles.submitted_at,
            form_fills.first_filled_at
        ) as lead_at,
        case when contacts.lifecycle_stage = 'mql' then contacts.lifecycle_stage_changed_at end
            as crm_mql_at,
        least(
            case when contacts.lifecycle_stage = 'sql' then contacts.lifecycle_stage_changed_at end,
            feedback.accepted_at
        ) as sales_accepted_at,
        -- a deal is won or lost only once it was an opportunity: the earliest evidence
        least(
            case
                when contacts.lifecycle_stage = 'opportunity'
                    then contacts.lifecycle_stage_changed_at
            end,
            feedback.closed_at
        ) as opportunity_at,
        least(
            case
                when contacts.lifecycle_stage = 'customer' then contacts.lifecycle_stage_changed_at
            end,
            feedback.won_at
        ) as customer_at,
        feedback.first_sales_feedback_at,
        feedback.rejected_at,
        feedback.recycled_at,
        feedback.lost_at,
        rejections.rejection_reason,
        latest_feedback.latest_sales_outcome,
        latest_feedback.latest_sales_outcome_at
    from contacts
    left join profiles using (contact_id)
    left join form_fills using (contact_id)
    left join feedback using (contact_id)
    left join latest_feedback using (contact_id)
    left join rejections using (contact_id)

)

select * from final
{% endmacro %}

{#- The contacts whose evidence may have changed since `mark`: a CRM row, a profile form,
    a form fill or sales feedback loaded since. -#}
{% macro lead_stage_inputs_loaded_since(mark) %}
    {{ contacts_loaded_since(['stg_crm__contacts', 'stg_web__lead_profiles',
                              'stg_web__form_fills', 'stg_crm__sales_feedback'], mark) }}
{% endmacro %}

{% macro lead_stage_sources() %}
    {{- return([source('crm', 'crm_contacts'), source('web', 'lead_profiles'),
                source('web', 'form_fills'), source('crm', 'sales_feedback')]) }}
{% endmacro %}
