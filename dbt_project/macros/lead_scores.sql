{#- Each lead's score as of now (or var('lead_scores_as_of')): the components
    (int_lead_score_components) aged to that moment. The body of the lead_scores view, and
    read by nurture_audience as its own CTE: a view over the lead_scores view would be
    dropped with it whenever dbt replaces it (`drop ... cascade`). -#}
{% macro lead_scores_now() %}
{%- set as_of = var('lead_scores_as_of') %}
with

-- not materialised, though read twice: a read of a few contacts stays on its indexes
components as not materialized (

    select * from {{ ref('int_lead_score_components') }}

),

scoring_time as not materialized (

    select {% if as_of %}cast('{{ as_of }}' as timestamptz){% else %}now(){% endif %}
        as scored_at

),

aged as (

    select
        components.*,
        scoring_time.scored_at,
        -- an event after the scoring time (a clock ahead, a back-test): what happens later
        -- counts later, so such a lead is aged event by event (later_events)
        components.last_engaged_at > scoring_time.scored_at as has_later_events,
        {{ decay('scoring_time.scored_at - components.last_engaged_at') }} as factor
    from components
    cross join scoring_time

),

later_events as (

    -- found through the components' index on last_engaged_at, and worked out once per
    -- read: a join to it keeps a read of a few contacts on the components' index
    select
        events.contact_id,
        {{ points_by_component() }},
        sum(points) as engagement_points,
        count(*) as engagement_event_count,
        max(occurred_at) as last_engaged_at
    from (
        select
            events.contact_id,
            events.engagement_kind,
            events.occurred_at,
            events.base_weight * {{ decay('scoring_time.scored_at - events.occurred_at') }}
                as points
        from {{ ref('int_lead_engagement_events') }} as events
        cross join scoring_time
        where events.occurred_at <= scoring_time.scored_at
            and events.contact_id in (
                select components.contact_id from components cross join scoring_time
                where components.last_engaged_at > scoring_time.scored_at
            )
    ) as events
    group by events.contact_id

),

engagement as (

    select
        aged.contact_id,
        {%- for attribute in lead_fit_attributes() %}
        aged.{{ attribute }}_points,
        {%- endfor %}
        aged.fit_score,
        aged.profile_submitted_at,
        aged.scored_at,
        {%- for component in lead_engagement_components() + ['engagement'] %}
        case
            when aged.has_later_events then coalesce(later.{{ component }}_points, 0)
            else coalesce(aged.{{ component }}_points * aged.factor, 0)
        end as {{ component }}_points,
        {%- endfor %}
        case
            when aged.has_later_events then coalesce(later.engagement_event_count, 0)
            else aged.engagement_event_count
        end as engagement_event_count,
        case
            when aged.has_later_events then later.last_engaged_at else aged.last_engaged_at
        end as last_engaged_at
    from aged
    left join later_events as later using (contact_id)

),

final as (

    select
        contact_id,
        {%- for attribute in lead_fit_attributes() %}
        {{ attribute }}_points,
        {%- endfor %}
        fit_score,
        {%- for component in lead_engagement_components() %}
        round(cast({{ component }}_points as numeric), 2) as {{ component }}_points,
        {%- endfor %}
        round(cast(engagement_points as numeric), 2) as engagement_score,
        engagement_event_count,
        fit_score + round(cast(engagement_points as numeric), 2) as total_score,
        {{ var('lead_mql_threshold') }} as mql_threshold,
        fit_score + round(cast(engagement_points as numeric), 2)
            >= {{ var('lead_mql_threshold') }} as is_mql,
        profile_submitted_at,
        last_engaged_at,
        scored_at
    from engagement

)

select * from final
{% endmacro %}
