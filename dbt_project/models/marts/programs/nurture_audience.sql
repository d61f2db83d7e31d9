-- The lead nurture program's audience: one row per lead and nurture cycle. A lead enters
-- when it becomes a lead; sales' feedback takes it out (accepted, rejected, won, lost),
-- and a recycled lead starts a new cycle after the cooldown. Reaching the MQL threshold
-- ends the cycle's content (the goal) and hands the lead to sales: its owner, or a
-- round-robin of the account managers; the sales manager hears when nobody worked it
-- within the SLA.
--
-- A view over two tables: the cycles (int_nurture_cycles) and the score parts
-- (int_lead_score_components), both incremental by contact and indexed by it. The score, and what it decides (MQL, receptive), is worked out as of the read: a
-- build no longer redoes every lead because time passed.
{{ config(materialized='view') }}

with

cycles as (

    select * from {{ ref('int_nurture_cycles') }}

),

-- lead_scores' query, not the view: see lead_scores_now()
scores as (

    {{ lead_scores_now() | indent(4) }}

),

sales_team as (

    select
        email,
        row_number() over (order by user_id) - 1 as seat,
        count(*) over () as team_size
    from {{ ref('stg_crm__users') }}
    where role = 'account_manager'

),

sales_manager as (

    select email from {{ ref('stg_crm__users') }}
    where role = 'sales_manager'
    order by user_id
    limit 1

),

final as (

    select
        cycles.contact_id,
        cycles.enrollment_id,
        cycles.enrolled_at,
        cycles.content_1_sent_at,
        cycles.content_2_sent_at,
        cycles.content_3_sent_at,
        cycles.is_recycled,
        cycles.persona,
        cycles.email,
        cycles.phone,
        cycles.first_name,
        cycles.last_name,
        cycles.time_zone,
        cycles.locale,
        cycles.has_email_consent,
        cycles.has_sms_consent,
        scores.total_score,
        scores.fit_score,
        scores.engagement_score,
        round(scores.email_points, 1) as email_points,
        round(scores.webinar_points, 1) as webinar_points,
        round(scores.page_visit_points, 1) as page_visit_points,
        round(scores.form_fill_points, 1) as form_fill_points,
        scores.last_engaged_at,
        cycles.recent_activity,
        scores.is_mql,
        -- Engaging heavily right now: the track pauses rather than talk over them.
        not (
            scores.engagement_score >= {{ var('nurture_pause_engagement_score') }}
            and scores.last_engaged_at > now() - interval '2 days'
        ) as is_receptive,
        case when scores.is_mql then cycles.crossed_at end as mql_at,
        coalesce(
            cycles.owner_email,
            (select email from sales_team
             where seat = (hashtext(cycles.contact_id) & 2147483647) % team_size)
        ) as handoff_email,
        coalesce(cycles.owner_name, 'Sales') as handoff_name,
        (select email from sales_manager) as sales_manager_email,
        case when scores.is_mql then
            cycles.crossed_at + interval '1 hour' * {{ var('mql_sla_hours') }}
        end as sla_due_at,
        cycles.worked_at is null as is_unworked,
        cycles.source_loaded_at
    from cycles
    inner join scores using (contact_id)

)

select * from final
