{#- Whether rows left a source table since a model's last build, told by PostgreSQL's own
    counters: the rows deleted from it, and the file holding it (TRUNCATE makes a new one).
    Finding a model's rows whose source row is gone takes a lookup per row, millions at
    scale; a model whose sources only grew skips it. Each build remembers the marks it saw,
    read before its own deletes, in intermediate.source_deletion_marks. A counter reported
    late, or reset, is caught by the next build: the mark differs then. -#}

{#- The current mark of each relation, by its name. -#}
{% macro source_deletion_marks(relations) %}
    {%- set marks = {} %}
    {%- for relation in relations if execute %}
    {%- set table = "to_regclass('" ~ relation.schema ~ "." ~ relation.identifier ~ "')" %}
    {%- set found = run_query(
            "select coalesce((select n_tup_del from pg_stat_user_tables where relid = "
            ~ table ~ "), 0) || ':' || coalesce(pg_relation_filenode(" ~ table ~ "), 0)") %}
    {%- do marks.update({relation | string: found.columns[0].values()[0]}) %}
    {%- endfor %}
    {{- return(marks) }}
{% endmacro %}

{#- The names in `marks` whose mark is not the one this model remembered (all of them, the
    first time); none when the model is built whole, which leaves nothing to look for. -#}
{% macro sources_with_deletions(marks) %}
    {%- if not is_incremental() %}{{ return([]) }}{% endif %}
    {%- set remembered = remembered_deletion_marks(this.identifier) %}
    {%- set changed = [] %}
    {%- for relation, mark in marks.items() if remembered.get(relation) != mark %}
    {%- do changed.append(relation) %}
    {%- endfor %}
    {{- return(changed) }}
{% endmacro %}

{#- The marks `model` remembered at its last build, by relation name. -#}
{% macro remembered_deletion_marks(model) %}
    {%- set remembered = {} %}
    {%- if execute %}
    {%- set found = run_query("select relation, mark from " ~ deletion_marks_table()
                              ~ " where model = '" ~ model ~ "'") %}
    {%- for relation, mark in found.rows %}{% do remembered.update({relation: mark}) %}{% endfor %}
    {%- endif %}
    {{- return(remembered) }}
{% endmacro %}

{#- Statements that remember `marks` for this model's next build. -#}
{% macro remember_deletion_marks(marks) %}
    {%- for relation, mark in marks.items() %}
    insert into {{ deletion_marks_table() }} (model, relation, mark)
    values ('{{ this.identifier }}', '{{ relation }}', '{{ mark }}')
    on conflict (model, relation) do update set mark = excluded.mark;
    {%- endfor %}
{% endmacro %}

{% macro deletion_marks_table() %}
    {{- return(generate_schema_name('intermediate', none) | trim ~ '.source_deletion_marks') }}
{% endmacro %}

{#- on-run-start: the tables of marks (and build_marks, changed_contacts.sql), made before
    the models that use them run side by side (a build starting at the same moment may make
    them first). -#}
{% macro create_deletion_marks_table() %}
    {%- set table = deletion_marks_table() %}
    do $$
    begin
        create schema if not exists {{ table.split('.')[0] }};
        create table if not exists {{ table }} (
            model text, relation text, mark text not null, primary key (model, relation));
        create table if not exists {{ build_marks_table() }} (
            model text primary key, started_at timestamptz not null);
    exception
        when duplicate_table or duplicate_schema or unique_violation then
            null;
    end
    $$;
{% endmacro %}
