-- Each lead's score now: fit from the profile, plus engagement where every event's weight
-- halves each half-life: weight * 0.5 ^ (age_days / half_life_days). The engagement comes
-- summed per lead, aged to its latest event (int_lead_engagement_by_contact, incremental):
-- a build ages 200k sums at a million contacts, not their 1.4M events.
{%- set as_of = var('lead_scores_as_of') %}
with

-- The leads: contacts in a scored stage, from the CRM's deduplicated exports rather than
-- marts.contacts (the same stage), so scoring, and the conversions and marts after it,
-- need not wait for contacts' consent.
leads as (

    select contact_id
    from {{ ref('int_contacts_deduplicated') }}
    where lifecycle_stage in ('{{ var("lead_scoring_stages") | join("', '") }}')

),

fit as (

    select * from {{ ref('int_lead_fit_scores') }}

),

scoring_time as (

    select {% if as_of %}cast('{{ as_of }}' as timestamptz){% else %}now(){% endif %}
        as scored_at

),

sums as (

    -- each lead's points aged to its latest event (int_lead_engagement_by_contact)
    -- joined, not `in (select ...)`: PostgreSQL would guess 200 leads and look each one's
    -- sums up by index (200k lookups) rather than hash them
    select sums.*
    from {{ ref('int_lead_engagement_by_contact') }} as sums
    inner join leads using (contact_id)

),

aged_sums as (

    -- Every event ages by the same factor from the contact's latest event on, so the sums
    -- age as their events would.
    select
        sums.contact_id,
        {%- for component in ['email', 'webinar', 'page_visit', 'form_fill'] %}
        sums.{{ component }}_points * aging.factor as {{ component }}_points,
        {%- endfor %}
        sums.engagement_points * aging.factor as engagement_score,
        sums.engagement_event_count,
        sums.last_engaged_at
    from sums
    cross join scoring_time
    cross join lateral (
        select {{ decay('scoring_time.scored_at - sums.last_engaged_at') }} as factor
    ) as aging
    where sums.last_engaged_at <= scoring_time.scored_at

),

later_events as (

    -- A lead with an event after the scoring time (a clock ahead, a back-test) is aged
    -- event by event: what happens later counts later.
    select events.*
    from {{ ref('int_lead_engagement_events') }} as events
    cross join scoring_time
    where events.contact_id in (
            select sums.contact_id from sums cross join scoring_time
            where sums.last_engaged_at > scoring_time.scored_at
        )
        and events.occurred_at <= scoring_time.scored_at

),

decayed as (

    select
        events.contact_id,
        events.engagement_kind,
        events.occurred_at,
        events.base_weight * {{ decay('scoring_time.scored_at - events.occurred_at') }}
            as points
    from later_events as events
    cross join scoring_time

),

engagement as (

    select * from aged_sums
    union all
    select
        contact_id,
        {{ points_by_component() }},
        sum(points) as engagement_score,
        count(*) as engagement_event_count,
        max(occurred_at) as last_engaged_at
    from decayed
    group by contact_id

),

scored as (

    select
        leads.contact_id,
        -- fit
        coalesce(fit.seniority_points, 0) as seniority_points,
        coalesce(fit.job_function_points, 0) as job_function_points,
        coalesce(fit.company_size_points, 0) as company_size_points,
        coalesce(fit.industry_points, 0) as industry_points,
        coalesce(fit.budget_points, 0) as budget_points,
        coalesce(fit.authority_points, 0) as authority_points,
        coalesce(fit.need_points, 0) as need_points,
        coalesce(fit.timeline_points, 0) as timeline_points,
        coalesce(fit.fit_score, 0) as fit_score,
        -- engagement, decayed
        {%- for component in ['email', 'webinar', 'page_visit', 'form_fill'] %}
        round(cast(coalesce(engagement.{{ component }}_points, 0) as numeric), 2)
            as {{ component }}_points,
        {%- endfor %}
        round(cast(coalesce(engagement.engagement_score, 0) as numeric), 2) as engagement_score,
        coalesce(engagement.engagement_event_count, 0) as engagement_event_count,
        fit.submitted_at as profile_submitted_at,
        engagement.last_engaged_at,
        scoring_time.scored_at
    from leads
    cross join scoring_time
    left join fit using (contact_id)
    left join engagement using (contact_id)

),

final as (

    select
        contact_id,
        seniority_points,
        job_function_points,
        company_size_points,
        industry_points,
        budget_points,
        authority_points,
        need_points,
        timeline_points,
        fit_score,
        email_points,
        webinar_points,
        page_visit_points,
        form_fill_points,
        engagement_score,
        engagement_event_count,
        fit_score + engagement_score as total_score,
        {{ var('lead_mql_threshold') }} as mql_threshold,
        fit_score + engagement_score >= {{ var('lead_mql_threshold') }} as is_mql,
        profile_submitted_at,
        last_engaged_at,
        scored_at
    from scored

)

select * from final
