-- Each build (re)writes today's row per cohort (the month a contact became a lead): how
-- many reached each stage so far and the conversion between stages. A contact who skipped
-- a stage (sales took them before they scored as an MQL) counts as having passed it; a
-- lead sales gave any feedback on was handed over, so it counts as an MQL. Past days
-- cannot be rebuilt from the sources, so --full-refresh leaves this table alone.
{{
    config(
        materialized='incremental',
        unique_key=['snapshot_date', 'cohort_month'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        full_refresh=false,
    )
}}
with

funnel as (

    select * from {{ ref('lifecycle_funnel') }}
    where lead_at is not null

),

counted as (

    select
        cast(now() at time zone 'UTC' as date) as snapshot_date,
        cast(date_trunc('month', lead_at at time zone 'UTC') as date) as cohort_month,
        count(*) as leads,
        count(coalesce(mql_at, first_sales_feedback_at, sales_accepted_at, opportunity_at,
            customer_at)) as mqls,
        count(coalesce(sales_accepted_at, opportunity_at, customer_at)) as sales_accepted,
        count(coalesce(opportunity_at, customer_at)) as opportunities,
        count(customer_at) as customers,
        count(rejected_at) as rejected,
        count(recycled_at) as recycled,
        count(*) filter (where current_stage = 'closed_lost') as lost
    from funnel
    group by 1, 2

),

final as (

    select
        snapshot_date,
        cohort_month,
        leads,
        mqls,
        sales_accepted,
        opportunities,
        customers,
        rejected,
        recycled,
        lost,
        round(1.0 * mqls / nullif(leads, 0), 4) as lead_to_mql_rate,
        round(1.0 * sales_accepted / nullif(mqls, 0), 4) as mql_to_sales_accepted_rate,
        round(1.0 * opportunities / nullif(sales_accepted, 0), 4)
            as sales_accepted_to_opportunity_rate,
        round(1.0 * customers / nullif(opportunities, 0), 4) as opportunity_to_customer_rate,
        round(1.0 * customers / nullif(leads, 0), 4) as lead_to_customer_rate
    from counted

)

select * from final
