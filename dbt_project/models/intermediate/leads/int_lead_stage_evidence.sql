-- What puts each contact at a stage of the funnel apart from its score: the CRM's current
-- stage, the profile form and form fills (a lead), and what sales said (accepted, won,
-- lost, rejected, recycled). One row per contact. lifecycle_funnel adds the score's MQL
-- crossing; nurture_audience reads when a lead entered and what sales said last.
--
-- A table, built once and read by both: as a view each would work it out for every contact
-- again, and the nurture audience would still wait for the funnel.
{{ config(materialized='table') }}

with

contacts as (

    select contact_id, lifecycle_stage, lifecycle_stage_changed_at
    from {{ ref('int_contacts_deduplicated') }}

),

form_fills as (

    select contact_id, min(filled_at) as first_filled_at
    from {{ ref('stg_web__form_fills') }}
    group by contact_id

),

profiles as (

    select contact_id, submitted_at
    from {{ ref('stg_web__lead_profiles') }}

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
    group by contact_id

),

latest_feedback as (

    select distinct on (contact_id)
        contact_id,
        outcome as latest_sales_outcome,
        recorded_at as latest_sales_outcome_at
    from {{ ref('stg_crm__sales_feedback') }}
    order by contact_id, recorded_at desc, feedback_id desc

),

rejections as (

    select distinct on (contact_id)
        contact_id,
        reason as rejection_reason
    from {{ ref('stg_crm__sales_feedback') }}
    where outcome = 'rejected'
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
