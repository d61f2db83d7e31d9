{#- The rows an incremental build takes from a source: those loaded since the newest row
    already in the model, less a lookback. Re-reading a row is harmless: the models replace
    rows by their unique key. -#}
{% macro loaded_since_last_build(source_column, model_column='loaded_at') %}
    {{ source_column }} > {{ lookback_from("select max(" ~ model_column ~ ") from " ~ this) }}
{%- endmacro %}

{#- `'<time>'::timestamptz - interval '<incremental_lookback>'` (for loads that committed
    late), the time being what `query` selects (none: '-infinity'). It is read first and
    written in as a literal: compared with a subquery, PostgreSQL guesses a third of the
    table is newer and scans it all, index or not. -#}
{% macro lookback_from(query) %}
    {%- set newest = run_query("select coalesce((" ~ query ~ "), '-infinity')::text")
            if execute else none %}
    {{- "'" ~ (newest.columns[0].values()[0] if newest else "-infinity")
        ~ "'::timestamptz - interval '" ~ var("incremental_lookback") ~ "'" -}}
{% endmacro %}

{#- Each kind of engagement event with the sources its rows come from, the source rows as
    a relation named `source`, and their id (the events' source_event_id). -#}
{% macro engagement_source_checks() %}
    {{- return([
        ("like 'email_%'",
         [source('sendgrid', 'sendgrid_events'), source('nurture', 'message_ledger')],
         ref('stg_sendgrid__events') ~ ' as source inner join '
             ~ ref('stg_nurture__message_ledger') ~ ' as ledger using (ledger_id)',
         'sg_event_id'),
        ("= 'webinar_attended'", [source('app', 'webinar_attendance')],
         ref('stg_app__webinar_attendance') ~ ' as source', 'attendance_id'),
        ("in ('page_visit', 'high_intent_page_visit')", [source('web', 'page_visits')],
         ref('stg_web__page_visits') ~ ' as source', 'visit_id'),
        ("= 'form_fill'", [source('web', 'form_fills')],
         ref('stg_web__form_fills') ~ ' as source', 'fill_id')]) }}
{% endmacro %}

{#- The source tables of the engagement events. -#}
{% macro engagement_sources() %}
    {{- return(engagement_source_checks() | map(attribute=1) | sum(start=[])) }}
{% endmacro %}

{#- After a build of int_lead_engagement_events: drop the rows whose source row is gone
    (provider events cleared, a message erased from the ledger, a visit erased), as a full
    refresh would. Only the sources that lost rows since the last build are looked up
    (source_deletions.sql). -#}
{% macro delete_engagement_without_source() %}
    {%- set marks = source_deletion_marks(engagement_sources()) %}
    {%- set lost_rows = sources_with_deletions(marks) %}
    {%- for kinds, relations, source_rows, id in engagement_source_checks()
            if relations | map('string') | select('in', lost_rows) | list %}
    delete from {{ this }} as kept
    where kept.engagement_kind {{ kinds }}
      and not exists (select from {{ source_rows }}
                      where source.{{ id }} = kept.source_event_id);
    {%- endfor %}
    {{ remember_deletion_marks(marks) }}
{% endmacro %}

{#- After a build of message_sends: drop the rows whose ledger row is gone, as a full
    refresh would (the ledger keeps every decision; a test or a reset empties it). -#}
{% macro delete_sends_without_ledger_row() %}
    {%- set marks = source_deletion_marks([source('nurture', 'message_ledger')]) %}
    {%- if sources_with_deletions(marks) %}
    delete from {{ this }} as sends
    where not exists (select from {{ ref('stg_nurture__message_ledger') }} as ledger
                      where ledger.ledger_id = sends.ledger_id);
    {%- endif %}
    {{ remember_deletion_marks(marks) }}
{% endmacro %}
