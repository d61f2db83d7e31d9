{#- lead_score_history compares every lead with its latest row on the first build of a UTC
    day (each gets the day's row) and after the scoring changed. Later the same day only
    the leads that can have moved are compared (score_history_candidates): looking up
    200,000 latest rows was most of an hourly build's history at a million contacts. -#}

{#- Since when the leads are compared: when the history's last build scored them, if
    that was today (UTC: this read and the scoring are one transaction, one now()) with
    the scoring as now; none (every lead) otherwise, on a
    back-test (var lead_scores_as_of), and with a negative engagement weight (a score that
    can rise with time alone). -#}
{% macro score_history_mark() %}
    {%- if not execute or not is_incremental() or not score_history_marks_kept()
          or var('lead_engagement_weights').values() | select('lt', 0) | list %}
        {{- return(none) }}
    {%- endif %}
    {%- set found = run_query(
            "select started_at::text from " ~ build_marks_table()
            ~ " where model = '" ~ score_history_mark_name() ~ "'"
            ~ " and (started_at at time zone 'UTC')::date = (now() at time zone 'UTC')::date") %}
    {%- if not found.rows %}{{ return(none) }}{% endif %}
    {{- return("'" ~ found.columns[0].values()[0] ~ "'::timestamptz") }}
{% endmacro %}

{#- Whether this build compares every lead as of now, so that a later one may start from
    it: not a back-test (var lead_scores_as_of), not `dbt build --empty`. -#}
{% macro score_history_marks_kept() %}
    {{- return(not var('lead_scores_as_of') and not invocation_args_dict.get('empty')) }}
{% endmacro %}

{#- The leads of lead_scores that can have a new row since `mark`, as a condition on it:
    those whose components were written since (a new event, profile or stage, the scoring
    summed again), and those at the threshold at `mark` and below it now: the score falls
    with time alone, never rises. Rounding is met with a cent to spare; a lead compared
    needlessly gets no row. Worked out on the components, as an array the view takes to
    their index: filtered after the view, it scored all 200,000 leads (2.5 s on the bench).
    No lookback: the history's build first waits for a build of the components in flight
    (its pre-hook, one_build_at_a_time), and a row written after it started has a later
    `built_at` (the time of the statement that wrote it). -#}
{% macro score_history_candidates(mark) %}
    {%- set threshold = var('lead_mql_threshold') %}
    contact_id = any(array(
        select contact_id from {{ ref('int_lead_score_components') }}
        where built_at > {{ mark }}
            or last_engaged_at > {{ mark }}
            or (fit_score + engagement_points * {{ decay(mark ~ ' - last_engaged_at') }}
                    >= {{ threshold }} - 0.01
                and fit_score + engagement_points * {{ decay('now() - last_engaged_at') }}
                    < {{ threshold }} + 0.01)
    ))
{% endmacro %}

{#- Post-hook: when this build scored the leads (its transaction's start, the `scored_at`
    of its rows), under a name that holds what the scores are made with, so that a build
    after that changed compares every lead. A back-test or an empty build forgets the
    mark instead: it did not compare the leads as of now. -#}
{% macro remember_score_history_build() %}
    {%- set name = score_history_mark_name() %}
    delete from {{ build_marks_table() }}
    where model like '{{ this.identifier }}:%'
    {%- if score_history_marks_kept() %}
        and model <> '{{ name }}';
    insert into {{ build_marks_table() }} (model, started_at)
    values ('{{ name }}', now())
    on conflict (model) do update set started_at = excluded.started_at
    {%- endif %};
{% endmacro %}

{#- The mark's name: the model's, and a hash of the scoring's vars, the threshold, the
    lead_scores view's definition (the code that scores) and this model's code (the reasons
    it compares). -#}
{% macro score_history_mark_name() %}
    {%- if not execute %}{{ return(this.identifier ~ ':') }}{% endif %}
    {%- set view = run_query("select coalesce(md5(pg_get_viewdef(to_regclass('"
                             ~ ref('lead_scores') ~ "'))), '')") %}
    {{- return(this.identifier ~ ':'
               ~ local_md5(lead_scoring_version() ~ var('lead_mql_threshold')
                           ~ view.columns[0].values()[0] ~ model.raw_code)) }}
{% endmacro %}

{#- Post-hook: an index on the MQL rows by time, for the models that read the MQLs scored
    since their last build (conversions, the funnel, the nurture cycles): without it each
    build reads the whole history, which grows by a row per lead a day. Not dbt's
    `indexes` config: that applies when a table is created, and this one never is again. -#}
{% macro index_mql_rows_by_time() %}
    create index if not exists {{ this.identifier }}_mql_scored_at
    on {{ this }} (scored_at) where is_mql
{% endmacro %}
