{#- int_nurture_cycles' rows: every lead's cycle, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro nurture_cycle_rows(changed=none) %}
with

-- Only the leads, and what is grouped by contact, are filtered to the changed contacts:
-- the tables joined to them are read through their indexes. Filtered both sides,
-- PostgreSQL would take the join for a handful of rows and compare each with each.
leads as (

    select contact_id from {{ ref('int_lead_score_components') }}
    {{ where_contact_in(changed) }}

),

-- When each lead entered and what sales said last (what the funnel's stages come from).
evidence as (

    select * from {{ ref('int_lead_stage_evidence') }}

),

-- Not materialised: read twice, a materialised CTE would copy and sort all 1M contacts
-- to join the 200k leads, where inlined it hashes them.
contacts as not materialized (

    select * from {{ ref('contacts') }}

),

profiles as (

    select contact_id, job_function from {{ ref('stg_web__lead_profiles') }}

),

mql_history as (

    select contact_id, scored_at from {{ ref('lead_score_history') }}
    where is_mql {{ and_contact_in(changed) }}

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
    where program = 'nurture' and state = 'sent' {{ and_contact_in(changed) }}
    group by contact_id, enrollment_id

),

feedback as (

    select contact_id, feedback_id, outcome, recorded_at
    from {{ ref('stg_crm__sales_feedback') }}
    {{ where_contact_in(changed) }}

),

cycles as (

    select
        leads.contact_id,
        -- A recycled lead comes back after the cooldown; otherwise since it became a lead.
        case
            when evidence.latest_sales_outcome = 'recycled'
                then evidence.recycled_at
                    + interval '1 day' * {{ var('nurture_recycle_cooldown_days') }}
            else coalesce(evidence.lead_at, contacts.created_at)
        end as enrolled_at,
        evidence.latest_sales_outcome = 'recycled' as is_recycled
    from leads
    inner join contacts using (contact_id)
    left join evidence using (contact_id)
    -- Sales has it (accepted, won, lost) or turned it down (rejected): not marketing's.
    where evidence.latest_sales_outcome is null or evidence.latest_sales_outcome = 'recycled'

),

crossings as (

    -- When the score first reached the threshold in this cycle: the handoff's time.
    select cycles.contact_id, min(mql_history.scored_at) as crossed_at
    from cycles
    inner join mql_history
        on mql_history.contact_id = cycles.contact_id
        and mql_history.scored_at >= cycles.enrolled_at
    group by cycles.contact_id

),

worked as (

    select crossings.contact_id, max(feedback.recorded_at) as worked_at
    from crossings
    inner join feedback
        on feedback.contact_id = crossings.contact_id
        and feedback.recorded_at >= crossings.crossed_at
    group by crossings.contact_id

),

recycles as (

    select distinct on (contact_id) contact_id, feedback_id as recycle_id
    from feedback
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
        contacts.owner_email,
        contacts.owner_name,
        activity.recent_activity,
        crossings.crossed_at,
        worked.worked_at,
        contacts.source_loaded_at,
        '{{ nurture_cycle_version() }}' as cycle_version
    from enrollments as cycles
    inner join contacts using (contact_id)
    left join track using (contact_id, enrollment_id)
    left join profiles using (contact_id)
    left join crossings using (contact_id)
    left join worked using (contact_id)
    -- Each lead's five latest, looked up through the events' index by contact and time:
    -- ranking every lead's events (7M at a million contacts) took most of the time. In the
    -- join itself, not a CTE joined back: PostgreSQL underestimates a changed batch and
    -- would compare each of its leads with all the others.
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
    ) as activity

)

select * from final
{% endmacro %}

{#- The contacts whose cycle may have changed since `mark`: everything contacts and the
    stage evidence read, a nurture message's ledger row, a score row over the threshold,
    or a lead's engagement event (its five latest). -#}
{% macro nurture_cycle_inputs_loaded_since(mark) %}
    {{ contact_inputs_loaded_since(mark) }}
    union all
    {{ lead_stage_inputs_loaded_since(mark) }}
    union all
    select contact_id from {{ ref('stg_nurture__message_ledger') }}
    where program = 'nurture' and updated_at > {{ mark }}
    union all
    select contact_id from {{ ref('lead_score_history') }}
    where is_mql and scored_at > {{ mark }}
    union all
    -- leads only: a day's events touch many more contacts that are not
    select contact_id from {{ ref('int_lead_engagement_events') }}
    where loaded_at > {{ mark }}
        and contact_id in (select contact_id from {{ ref('int_lead_score_components') }})
    union all
    -- every contact when the vars the cycles were made with changed
    select contact_id from {{ ref('int_contacts_deduplicated') }}
    where exists (
        select from {{ this }} where cycle_version <> '{{ nurture_cycle_version() }}'
    )
{% endmacro %}

{#- What the cycles depend on beyond the data: who is a lead (the scoring's vars) and the
    recycling cooldown. -#}
{% macro nurture_cycle_version() %}
    {{- return(local_md5(lead_scoring_version() ~ var('nurture_recycle_cooldown_days'))) }}
{% endmacro %}

{#- The deletion marks of what the cycles read; for the events, those the engagement events
    remembered (they drop an erased event without a newer load time); the score history's
    (a reset empties it). -#}
{% macro nurture_cycle_source_marks() %}
    {%- set marks = remembered_deletion_marks('int_lead_engagement_events') %}
    {%- do marks.update(contact_source_marks()) %}
    {%- do marks.update(source_deletion_marks(lead_stage_sources()
                                              + [ref('lead_score_history')])) %}
    {{- return(marks) }}
{% endmacro %}
