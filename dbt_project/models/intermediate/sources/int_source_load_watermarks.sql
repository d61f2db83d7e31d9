-- How far each raw table that only grows by loads had been loaded when the build last read
-- it (SendGrid's events: by when they were received). Its tests (`unique_since_last_build`,
-- tests whose `where` says `__last_build__`) run before it in `dbt build`, so they read the
-- previous build's marks; a failing test skips this model, and the next build checks the
-- same rows again. Outside `dbt build` (a plain `dbt run`) those tests have not run, so the
-- marks stay where they were.
{{ config(materialized='table') }}

{%- set tables = [('app', 'events', '_loaded_at'), ('app', 'signups', '_loaded_at'),
                 ('web', 'page_visits', '_loaded_at'), ('web', 'form_fills', '_loaded_at'),
                 ('crm', 'consents', '_loaded_at'), ('sendgrid', 'sendgrid_events', 'received_at')] %}
{%- set keep_marks = execute and flags.WHICH != 'build' and load_relation(this) is not none %}

{% if keep_marks %}
select * from {{ this }}
{% else %}
{% for source_name, table_name, loaded_at in tables %}
{%- set relation = source(source_name, table_name) %}
select
    '{{ relation.schema }}.{{ relation.identifier }}' as source_table,
    max({{ loaded_at }}) as loaded_through
from {{ relation }}
{% if not loop.last %}union all{% endif %}
{% endfor %}
{% endif %}
