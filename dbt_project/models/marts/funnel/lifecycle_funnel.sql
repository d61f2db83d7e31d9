-- One row per contact: when they reached each stage of lead → MQL → sales accepted →
-- opportunity → customer, days between stages, where they stand now, and what sales said.
-- The CRM exports only the current stage with its change time, so a stage's time comes
-- from the CRM when the contact is in it now, else from scoring and sales feedback.
with

-- The CRM's stage from its deduplicated exports, as marts.contacts has it: the funnel
-- need not wait for contacts' consent.
contacts as (

    select contact_id, lifecycle_stage, lifecycle_stage_changed_at
    from {{ ref('int_contacts_deduplicated') }}

),

scores as (

    select * from {{ ref('lead_scores') }}

),

first_mql as (

    select contact_id, min(scored_at) as crossed_at
    from {{ ref('lead_score_history') }}
    where is_mql
    group by contact_id

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

stages as (

    select
        contacts.contact_id,
        contacts.lifecycle_stage as crm_lifecycle_stage,
        least(
            case when contacts.lifecycle_stage = 'lead' then contacts.lifecycle_stage_changed_at end,
            profiles.submitted_at,
            form_fills.first_filled_at
        ) as lead_at,
        least(
            case when contacts.lifecycle_stage = 'mql' then contacts.lifecycle_stage_changed_at end,
            first_mql.crossed_at,
            case when scores.is_mql then scores.scored_at end
        ) as scored_mql_at,
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
        scores.is_mql as is_mql_now,
        feedback.first_sales_feedback_at,
        feedback.rejected_at,
        feedback.recycled_at,
        feedback.lost_at,
        rejections.rejection_reason,
        latest_feedback.latest_sales_outcome,
        latest_feedback.latest_sales_outcome_at
    from contacts
    left join scores using (contact_id)
    left join first_mql using (contact_id)
    left join form_fills using (contact_id)
    left join profiles using (contact_id)
    left join feedback using (contact_id)
    left join latest_feedback using (contact_id)
    left join rejections using (contact_id)

),

ordered as (

    select
        *,
        -- Scoring history starts with its first build: a crossing seen after sales had
        -- already taken the lead is not when it became an MQL, which stays unknown.
        case
            when scored_mql_at > least(
                first_sales_feedback_at, sales_accepted_at, opportunity_at, customer_at)
                then null
            else scored_mql_at
        end as mql_at
    from stages

),

final as (

    select
        contact_id,
        case
            when customer_at is not null then 'customer'
            when latest_sales_outcome = 'lost' then 'closed_lost'
            when opportunity_at is not null then 'opportunity'
            when latest_sales_outcome = 'rejected' then 'rejected'
            when latest_sales_outcome = 'recycled' then 'recycled'
            when sales_accepted_at is not null then 'sales_accepted'
            when mql_at is not null then 'mql'
            when lead_at is not null then 'lead'
            else crm_lifecycle_stage
        end as current_stage,
        crm_lifecycle_stage,
        coalesce(is_mql_now, false) as is_mql_now,
        lead_at,
        mql_at,
        sales_accepted_at,
        opportunity_at,
        customer_at,
        {%- for from_stage, to_stage in [('lead', 'mql'), ('mql', 'sales_accepted'),
                                         ('sales_accepted', 'opportunity'),
                                         ('opportunity', 'customer'), ('lead', 'customer')] %}
        round(cast(extract(epoch from {{ to_stage }}_at - {{ from_stage }}_at) / 86400.0
            as numeric), 1) as days_{{ from_stage }}_to_{{ to_stage }},
        {%- endfor %}
        first_sales_feedback_at,
        latest_sales_outcome,
        latest_sales_outcome_at,
        rejected_at,
        rejection_reason,
        recycled_at,
        lost_at
    from ordered

)

select * from final
