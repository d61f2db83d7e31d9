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

{#- After an incremental build of int_lead_engagement_events: drop the rows whose source
    row is gone (provider events cleared, a visit erased), as a full refresh would. Email
    rows are checked through the provider event's primary key; page visits and form fills,
    which have no index to look up, only when their source now holds fewer rows. -#}
{% macro delete_engagement_without_source() %}
    {%- if is_incremental() %}
    delete from {{ this }} as kept
    where case
        when kept.engagement_kind like 'email_%' then not exists (
            select from {{ ref('stg_sendgrid__events') }} as events
            inner join {{ ref('stg_nurture__message_ledger') }} as ledger using (ledger_id)
            where events.sg_event_id = kept.source_event_id)
        when kept.engagement_kind = 'webinar_attended' then not exists (
            select from {{ ref('stg_app__webinar_attendance') }} as attendance
            where attendance.attendance_id = kept.source_event_id)
        else false
    end;
    {%- for kinds, relation, id, at in [
            (['page_visit', 'high_intent_page_visit'], ref('stg_web__page_visits'),
             'visit_id', 'visited_at'),
            (['form_fill'], ref('stg_web__form_fills'), 'fill_id', 'filled_at')] %}
    {%- set kind_list = "('" ~ kinds | join("', '") ~ "')" %}
    delete from {{ this }} as kept
    where kept.engagement_kind in {{ kind_list }}
      and (select count(*) from {{ this }} where engagement_kind in {{ kind_list }})
          > (select count(*) from {{ relation }}
             where contact_id is not null and {{ at }} is not null)
      and not exists (select from {{ relation }} as source
                      where source.{{ id }} = kept.source_event_id);
    {%- endfor %}
    {%- endif %}
{% endmacro %}

{#- After an incremental build of message_sends: drop the rows whose ledger row is gone,
    as a full refresh would (the ledger keeps every decision; a test or a reset empties it). -#}
{% macro delete_sends_without_ledger_row() %}
    {%- if is_incremental() %}
    delete from {{ this }} as sends
    where not exists (select from {{ ref('stg_nurture__message_ledger') }} as ledger
                      where ledger.ledger_id = sends.ledger_id)
    {%- endif %}
{% endmacro %}
