{#- Indexes on raw tables, declared on the source (`config.meta.indexes`, a list of column
    or expression lists) and made by the first build that finds one missing (on-run-start). Loaders create
    raw tables bare; without these, each build's incremental reads (rows loaded since the
    last build) and since-last-build tests (ids of those rows) scan whole event tables.
    An index that exists costs a catalog lookup, without locking the table against loads.
    A role that may not create one (the loader owns the table) gets a warning, and a build
    that reads those tables whole. -#}
{% macro create_source_indexes() %}
    {%- if execute %}
    {%- for source in graph.sources.values() %}
    {%- for columns in source.config.meta.get('indexes', []) %}
    {%- set key = modules.re.sub('[^A-Za-z0-9_]+', '_', columns | join('_')).rstrip('_') %}
    {%- set index = source.identifier ~ '_' ~ key ~ '_idx' %}
    do $$
    begin
        if to_regclass('{{ source.schema }}.{{ source.identifier }}') is not null
           and to_regclass('{{ source.schema }}.{{ index }}') is null then
            create index if not exists {{ index }}
                on {{ source.schema }}.{{ source.identifier }} ({{ columns | join(', ') }});
        end if;
    exception
        when duplicate_table or unique_violation then
            null;  -- another build made it at the same moment
        when insufficient_privilege then  -- the loader owns it: slower builds, not none
            raise warning 'nurture: no index {{ index }}: only the owner of {{ source.schema }}.{{ source.identifier }} can create it (%)', sqlerrm;
    end
    $$;
    {%- endfor %}
    {%- endfor %}
    {%- endif %}
{% endmacro %}
