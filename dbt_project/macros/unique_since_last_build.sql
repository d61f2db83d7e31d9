{#- `unique` for a raw table that only grows by loads, without reading every row each build.
    A full refresh, or a build before intermediate.int_source_load_watermarks exists, checks
    the whole table as `unique` does. An incremental build checks the ids of the rows loaded
    since the previous build (less `incremental_lookback`) against the whole table, so a new
    row repeating an old id fails it; older rows were checked by the build that read them. -#}
{% test unique_since_last_build(model, column_name, loaded_at='_loaded_at') %}
{%- set watermarks = adapter.get_relation(
        database=target.database, schema='intermediate',
        identifier='int_source_load_watermarks') if execute else none %}
{%- set since_last_build = watermarks is not none and not flags.FULL_REFRESH %}

select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
{%- if since_last_build %}
    and {{ column_name }} in (
        select {{ column_name }} from {{ model }}
        where {{ loaded_at }} > coalesce(
            (select loaded_through from {{ watermarks }}
             where source_table = '{{ model.schema }}.{{ model.identifier }}'),
            '-infinity') - interval '{{ var("incremental_lookback") }}'
    )
{%- endif %}
group by {{ column_name }}
having count(*) > 1
{% endtest %}
