{#- A test's `where` config may say `__last_build__`: when the previous build read its raw
    table (int_source_load_watermarks, less the lookback; `last_build_lookback`). A test on
    a table that only grows by loads then reads the rows loaded since, e.g.
    `where: "_loaded_at > __last_build__"`; older rows passed the build that read them. A
    full refresh, or a build before the marks exist, reads every row ('-infinity'). dbt's
    own `get_where_subquery`, with the placeholder filled in. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') or '' %}
    {%- if '__last_build__' in where %}
        {%- set since = last_build_lookback(relation) %}
        {%- set where = where | replace('__last_build__',
                                        since if since is not none else "'-infinity'::timestamptz") %}
    {%- endif %}
    {%- if where %}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') %}
    {%- endif %}
    {%- do return(relation) %}
{%- endmacro %}
