-- How each lead's score moved and why: every build appends a row for a contact whose
-- score changed for a reason other than time passing (a new event, a new profile answer,
-- crossing the threshold either way), and one row per contact per day so the decay shows.
-- The past cannot be rebuilt from the sources, so --full-refresh leaves this table alone.
-- Later in a UTC day only the leads that can have moved are compared (lead_score_history.sql
-- in macros).
{{
    config(
        materialized='incremental',
        unique_key=['contact_id', 'scored_at'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        full_refresh=false,
        pre_hook=["{{ one_build_at_a_time(ref('int_lead_score_components')) }}"],
        post_hook=["{{ remember_score_history_build() }}", "{{ index_mql_rows_by_time() }}"],
    )
}}
-- depends_on: {{ ref('int_lead_score_components') }}
{%- set mark = score_history_mark() %}
with

scores as (

    select * from {{ ref('lead_scores') }}
    {%- if mark %}
    where {{ score_history_candidates(mark) }}
    {%- endif %}

),

{% if not is_incremental() %}
previous as (

    -- the first build: no history yet
    select
        cast(null as text) as contact_id,
        cast(null as integer) as fit_score,
        cast(null as bigint) as engagement_event_count,
        cast(null as boolean) as is_mql,
        cast(null as numeric) as total_score,
        cast(null as timestamptz) as scored_at
    where false

),
{% endif %}

compared as (

    select
        scores.*,
        previous.total_score as previous_total_score,
        concat_ws(', ',
            case when previous.contact_id is null then 'first_score' end,
            case when scores.fit_score <> previous.fit_score then 'fit_changed' end,
            case when scores.engagement_event_count <> previous.engagement_event_count
                then 'new_engagement' end,
            case when scores.is_mql and not previous.is_mql then 'became_mql' end,
            case when not scores.is_mql and previous.is_mql then 'fell_below_mql' end,
            case
                when cast(scores.scored_at at time zone 'UTC' as date)
                    > cast(previous.scored_at at time zone 'UTC' as date)
                    then 'daily'
            end
        ) as change_reasons
    from scores
    {%- if is_incremental() %}
    -- each lead's latest row, through the primary key's index: a `distinct on` over the
    -- whole history would read every row it ever wrote (200k more a day at a million
    -- contacts)
    left join lateral (
        select contact_id, fit_score, engagement_event_count, is_mql, total_score, scored_at
        from {{ this }} as history
        where history.contact_id = scores.contact_id
        order by history.scored_at desc
        limit 1
    ) as previous on true
    {%- else %}
    left join previous using (contact_id)
    {%- endif %}

),

final as (

    select
        contact_id,
        scored_at,
        change_reasons,
        total_score,
        total_score - previous_total_score as score_change,
        is_mql,
        fit_score,
        seniority_points,
        job_function_points,
        company_size_points,
        industry_points,
        budget_points,
        authority_points,
        need_points,
        timeline_points,
        engagement_score,
        email_points,
        webinar_points,
        page_visit_points,
        form_fill_points,
        engagement_event_count,
        mql_threshold
    from compared
    where change_reasons <> ''

)

select * from final
