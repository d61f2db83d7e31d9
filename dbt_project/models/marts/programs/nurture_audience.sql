-- The lead nurture program's audience: one row per lead and nurture cycle. A lead enters
-- when it becomes a lead; sales' feedback takes it out (accepted, rejected, won, lost),
-- and a recycled lead starts a new cycle after the cooldown. Reaching the MQL threshold
-- ends the cycle's content (the goal) and hands the lead to sales: its owner, or a
-- round-robin of the account managers; the sales manager hears when nobody worked it
-- within the SLA.

-- Indexed by contact: the plan reads it in contact order, the dispatcher a batch's contacts.
{{ config(indexes=[{'columns': ['contact_id']}]) }}

with

scores as (

    select * from {{ ref('lead_scores') }}

),

-- When each lead entered and what sales said last (what the funnel's stages come from).
evidence as (

    select * from {{ ref('int_lead_stage_evidence') }}

),

-- Not materialised: read twice, a materialised CTE would copy and sort all 1M contacts
-- to join the 200k leads, where inlined it hashes them (1.7 s of 11).
contacts as not materialized (

    select * from {{ ref('contacts') }}

),

profiles as (

    select contact_id, job_function from {{ ref('stg_web__lead_profiles') }}

),

history as (

    select contact_id, scored_at, is_mql from {{ ref('lead_score_history') }}

),

track as (

    -- When each piece of this cycle's track went out: the next one is timed from it.
    select
        contact_id,
        enrollment_id,
        max(sent_at) filter (where step = 'content_1') as content_1_sent_at,
        max(sent_at) filter (where step = 'content_2') as content_2_sent_at,
        max(sent_at) filter (where step = 'content_3') as content_3_sent_at
    from {{ ref('stg_nurture__message_ledger') }}
    where program = 'nurture' and state = 'sent'
    group by contact_id, enrollment_id

),

feedback as (

    select contact_id, recorded_at from {{ ref('stg_crm__sales_feedback') }}

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

cycles as (

    select
        scores.contact_id,
        -- A recycled lead comes back after the cooldown; otherwise since it became a lead.
        case
            when evidence.latest_sales_outcome = 'recycled'
                then evidence.recycled_at
                    + interval '1 day' * {{ var('nurture_recycle_cooldown_days') }}
            else coalesce(evidence.lead_at, contacts.created_at)
        end as enrolled_at,
        evidence.latest_sales_outcome = 'recycled' as is_recycled,
        scores.is_mql,
        scores.total_score,
        scores.fit_score,
        scores.engagement_score,
        scores.email_points,
        scores.webinar_points,
        scores.page_visit_points,
        scores.form_fill_points,
        scores.last_engaged_at
    from scores
    inner join contacts using (contact_id)
    left join evidence using (contact_id)
    -- Sales has it (accepted, won, lost) or turned it down (rejected): not marketing's.
    where evidence.latest_sales_outcome is null or evidence.latest_sales_outcome = 'recycled'

),

crossings as (

    -- When the score reached the threshold in this cycle: the handoff's time.
    select cycles.contact_id, min(history.scored_at) as mql_at
    from cycles
    inner join history
        on history.contact_id = cycles.contact_id
        and history.is_mql
        and history.scored_at >= cycles.enrolled_at
    group by cycles.contact_id

),

worked as (

    select crossings.contact_id, max(feedback.recorded_at) as worked_at
    from crossings
    inner join feedback
        on feedback.contact_id = crossings.contact_id
        and feedback.recorded_at >= crossings.mql_at
    group by crossings.contact_id

),

recycles as (

    select distinct on (contact_id) contact_id, feedback_id as recycle_id
    from {{ ref('stg_crm__sales_feedback') }}
    where outcome = 'recycled'
    order by contact_id, recorded_at desc

),

enrollments as (

    -- A stable id per cycle, whatever later data says about when it began: the first
    -- cycle, then the feedback that recycled the lead.
    select
        cycles.*,
        'nurture:' || cycles.contact_id || ':'
            || case when cycles.is_recycled then recycles.recycle_id else 'first' end
            as enrollment_id
    from cycles
    left join recycles using (contact_id)

),

activity as (

    -- Each lead's five latest, looked up through the events' index by contact and time:
    -- ranking every lead's events (7M at a million contacts) was most of this model's time.
    select cycles.contact_id, latest.recent_activity
    from cycles
    cross join lateral (
        select string_agg(
            replace(engagement_kind, '_', ' ') || ' ' || to_char(occurred_at, 'YYYY-MM-DD'),
            '; ' order by occurred_at desc, engagement_event_id) as recent_activity
        from (
            -- ties broken by id: the same rows in the same order on every build
            select engagement_kind, occurred_at, engagement_event_id
            from {{ ref('int_lead_engagement_events') }} as events
            where events.contact_id = cycles.contact_id
            order by occurred_at desc, engagement_event_id
            limit 5
        ) as five
    ) as latest

),

final as (

    select
        cycles.contact_id,
        cycles.enrollment_id,
        cycles.enrolled_at,
        track.content_1_sent_at,
        track.content_2_sent_at,
        track.content_3_sent_at,
        cycles.is_recycled,
        coalesce(profiles.job_function, 'other') as persona,
        contacts.email,
        contacts.phone,
        contacts.first_name,
        contacts.last_name,
        contacts.time_zone,
        contacts.locale,
        contacts.has_email_consent,
        contacts.has_sms_consent,
        cycles.total_score,
        cycles.fit_score,
        cycles.engagement_score,
        round(cycles.email_points, 1) as email_points,
        round(cycles.webinar_points, 1) as webinar_points,
        round(cycles.page_visit_points, 1) as page_visit_points,
        round(cycles.form_fill_points, 1) as form_fill_points,
        cycles.last_engaged_at,
        activity.recent_activity,
        cycles.is_mql,
        -- Engaging heavily right now: the track pauses rather than talk over them.
        not (
            cycles.engagement_score >= {{ var('nurture_pause_engagement_score') }}
            and cycles.last_engaged_at > now() - interval '2 days'
        ) as is_receptive,
        case when cycles.is_mql then crossings.mql_at end as mql_at,
        coalesce(
            contacts.owner_email,
            (select email from sales_team
             where seat = (hashtext(cycles.contact_id) & 2147483647) % team_size)
        ) as handoff_email,
        coalesce(contacts.owner_name, 'Sales') as handoff_name,
        (select email from sales_manager) as sales_manager_email,
        case when cycles.is_mql then
            crossings.mql_at + interval '1 hour' * {{ var('mql_sla_hours') }}
        end as sla_due_at,
        worked.worked_at is null as is_unworked,
        contacts.source_loaded_at
    from enrollments as cycles
    inner join contacts using (contact_id)
    left join track using (contact_id, enrollment_id)
    left join profiles using (contact_id)
    left join crossings using (contact_id)
    left join worked using (contact_id)
    left join activity using (contact_id)

)

select * from final
