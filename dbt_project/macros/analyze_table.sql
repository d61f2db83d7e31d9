{#- Fresh planner statistics for a model just built as a table: without them PostgreSQL
    estimates a `row_number() = 1` filter at a fraction of the rows and joins the next
    model with nested loops (minutes at 100k contacts, hours at a million). -#}
{% macro analyze_table() %}
    {%- if model.config.materialized in ('table', 'incremental') -%}
        analyze {{ this }}
    {%- endif -%}
{% endmacro %}
