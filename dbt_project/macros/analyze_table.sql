{#- Fresh planner statistics for a model just built as a table: without them PostgreSQL
    estimates a `row_number() = 1` filter at a fraction of the rows and joins the next
    model with nested loops (minutes at 100k contacts, hours at a million). An incremental
    build adds a sliver of the rows: the statistics of its first build still hold, and
    autovacuum refreshes them as the table grows. -#}
{% macro analyze_table() %}
    {%- if model.config.materialized == 'table'
          or (model.config.materialized == 'incremental' and not is_incremental()) -%}
        analyze {{ this }}
    {%- endif -%}
{% endmacro %}
