{#- `unique` for a raw table that only grows by loads, without reading every row each build.
    A full refresh, or a build before intermediate.int_source_load_watermarks exists, checks
    the whole table as `unique` does. An incremental build checks the ids of the rows loaded
    since the previous build (less `incremental_lookback`) against the whole table, so a new
    row repeating an old id fails it; older rows were checked by the build that read them.
    Both columns want an index (`create_source_indexes`). -#}
{% test unique_since_last_build(model, column_name, loaded_at='_loaded_at') %}
{%- set since = last_build_lookback(model) %}

select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
{%- if since is not none %}
    and {{ column_name }} in (
        select {{ column_name }} from {{ model }}
        where {{ loaded_at }} > {{ since }}
    )
{%- endif %}
group by {{ column_name }}
having count(*) > 1
{% endtest %}

{#- Since when the previous build read `model` (int_source_load_watermarks, less the
    lookback), as a literal (`lookback_from`). None on a full refresh, or before the first
    build's marks. -#}
{% macro last_build_lookback(model) %}
    {%- if not execute or flags.FULL_REFRESH %}{{ return(none) }}{% endif %}
    {%- set watermarks = adapter.get_relation(
            database=target.database, schema='intermediate',
            identifier='int_source_load_watermarks') %}
    {%- if watermarks is none %}{{ return(none) }}{% endif %}
    {{ return(lookback_from("select loaded_through from " ~ watermarks ~ " where source_table = '"
                            ~ model.schema ~ "." ~ model.identifier ~ "'")) }}
{% endmacro %}
