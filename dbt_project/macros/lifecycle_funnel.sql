{#- lifecycle_funnel's rows: every contact's, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro lifecycle_funnel_rows(changed=none) %}
with

evidence as (

    select * from {{ ref('int_lead_stage_evidence') }}
    {{ where_contact_in(changed) }}

),

scores as (

    select contact_id, is_mql, scored_at from {{ ref('lead_scores') }}
    {{ where_contact_in(changed) }}

),

first_mql as (

    select contact_id, min(scored_at) as crossed_at
    from {{ ref('lead_score_history') }}
    where is_mql {{ and_contact_in(changed) }}
    group by contact_id

),

stages as (

    select
        evidence.*,
        least(
            evidence.crm_mql_at,
            first_mql.crossed_at,
            case when scores.is_mql then scores.scored_at end
        ) as scored_mql_at,
        scores.is_mql as is_mql_now
    from evidence
    left join scores using (contact_id)
    left join first_mql using (contact_id)

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
{% endmacro %}

{#- The contacts whose funnel row may have changed since `mark`: what the stage evidence
    reads, a score row over the threshold, and every contact whose MQL now (lead_scores,
    which moves with time) is not the one its row holds. -#}
{% macro lifecycle_funnel_inputs_loaded_since(mark) %}
    {{ lead_stage_inputs_loaded_since(mark) }}
    union all
    select contact_id from {{ ref('lead_score_history') }}
    where is_mql and scored_at > {{ mark }}
    union all
    select coalesce(now_mql.contact_id, held.contact_id)
    from (select contact_id from {{ ref('lead_scores') }} where is_mql) as now_mql
    full join (select contact_id from {{ this }} where is_mql_now) as held using (contact_id)
    where now_mql.contact_id is null or held.contact_id is null
{% endmacro %}
