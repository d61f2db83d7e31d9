{#- Per-contact incremental models (contacts, consent_history, contacts_quarantined,
    onboarding_audience, int_lead_stage_evidence) redo the contacts whose inputs were loaded
    since their last build. The contacts are found first and written into the model's query
    as a literal array: PostgreSQL pushes `contact_id = any(<array>)` down into the union
    and `distinct on` views the models read (consent, dedup), where a join or a subquery
    naming the same contacts would have it compute those views for everyone. -#}

{#- `'{id,...}'::text[]`, the distinct contact ids `query` selects (column `contact_id`);
    none when not incremental or when more than var('incremental_contacts_limit') changed:
    then the model reads every contact, as a full build does. -#}
{% macro changed_contacts(query) %}
    {%- if not execute or not is_incremental() %}{{ return(none) }}{% endif %}
    {%- set found = run_query(
            "select count(*), coalesce(array_agg(contact_id)::text, '{}') from ("
            ~ "select distinct contact_id from (" ~ query ~ ") as loaded"
            ~ " where contact_id is not null) as changed") %}
    {%- set count, ids = found.rows[0] %}
    {%- if count > var('incremental_contacts_limit') %}{{ return(none) }}{% endif %}
    {{- return(marked_array('changed contacts', ids | replace("'", "''"), 'text')) }}
{% endmacro %}

{#- `'<elements>'::<type>[]`, marked with `name` for the model's pre-hook to find again in
    its query (array_marked_in_query): asking again then could give another answer. -#}
{% macro marked_array(name, elements, type) %}
    {{- return("/* " ~ name ~ " */ '" ~ elements ~ "'::" ~ type ~ "[]") }}
{% endmacro %}

{#- The first array marked `name` (marked_array) in this model's compiled query; none when
    there is none. -#}
{% macro array_marked_in_query(name) %}
    {%- set found = modules.re.search("/\\* " ~ name ~ " \\*/ ('(?:[^']|'')*'::\\w+\\[\\])",
                                      model.compiled_code or '') %}
    {{- return(found.group(1) if found else none) }}
{% endmacro %}

{#- Pre-hook: delete the rows of the contacts this build redoes (the first array
    changed_contacts wrote into its query), or every row when it redoes every contact.
    delete+insert alone would replace only the contacts the build has rows for: a lead that
    became a customer, a survey milestone past its 30 days would stay. -#}
{% macro forget_changed_contacts() %}
    {%- if is_incremental() %}
    {%- set changed = array_marked_in_query('changed contacts') %}
    delete from {{ this }}
    {%- if changed %} where contact_id = any({{ changed }}){% endif %}
    {%- endif %}
{% endmacro %}

{#- Since when this model reads its inputs again: the start of its last build
    (build_marks), less the lookback (`lookback_from`); '-infinity' when it is built whole or
    has no mark yet. By build time, not by the newest row it read: a source loaded in one
    batch (a CRM export) would be read again whole by every build until its next batch.
    Rendered either way, so that dbt sees the refs of the query it goes into. -#}
{% macro since_last_build() -%}
    {{- lookback_from("select started_at from " ~ build_marks_table() ~ " where model = '"
                      ~ this.identifier ~ "'") if is_incremental()
        else "'-infinity'::timestamptz" -}}
{%- endmacro %}

{#- Post-hook: when this build (the dbt invocation) started, for the next one. -#}
{% macro remember_build_start() %}
    insert into {{ build_marks_table() }} (model, started_at)
    values ('{{ this.identifier }}', '{{ run_started_at }}')
    on conflict (model) do update set started_at = excluded.started_at;
{% endmacro %}

{% macro build_marks_table() %}
    {{- return(generate_schema_name('intermediate', none) | trim ~ '.build_marks') }}
{% endmacro %}

{#- `where <column> = any(<changed>)`; nothing when `changed` is none (every contact). -#}
{% macro where_contact_in(changed, column='contact_id') -%}
    {%- if changed is not none %}where {{ column }} = any({{ changed }}){% endif -%}
{%- endmacro %}

{#- `and <column> = any(<changed>)`, for a query that has a `where` already. -#}
{% macro and_contact_in(changed, column='contact_id') -%}
    {%- if changed is not none %}and {{ column }} = any({{ changed }}){% endif -%}
{%- endmacro %}

{#- The contacts with a row in any of `models` (by name, each with `contact_id` and
    `loaded_at`) loaded since `mark` (a timestamp literal). -#}
{% macro contacts_loaded_since(models, mark) %}
    {%- for model in models %}
    select contact_id from {{ ref(model) }} where loaded_at > {{ mark }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{% endmacro %}

{#- The contacts whose consent may have changed since `mark`: a consent change loaded since,
    or a CRM row loaded since (a new phone number takes the SMS replies from that number
    with it). -#}
{% macro consent_inputs_loaded_since(mark) %}
    {{ contacts_loaded_since(['int_consent_events', 'stg_crm__contacts'], mark) }}
{% endmacro %}

{#- The sources of int_consent_events: when one lost rows, every contact is built again. -#}
{% macro consent_sources() %}
    {{- return([source('crm', 'crm_contacts'), source('crm', 'consents'),
                source('receiver', 'unsubscribe_requests'), source('sendgrid', 'sendgrid_events'),
                source('nurture', 'message_ledger'),
                source('twilio', 'twilio_inbound_messages')]) }}
{% endmacro %}

{#- Post-hook of a per-contact incremental model whose rows `rows(changed)` renders: when a
    source in `marks` (source_deletion_marks) lost rows since its last build, every contact
    again, as a full refresh would. -#}
{% macro rebuild_after_deletions(marks, rows) %}
    {%- if sources_with_deletions(marks) %}
    delete from {{ this }};
    insert into {{ this }}
    {{ rows() }};
    {%- endif %}
    {{ remember_deletion_marks(marks) }}
{% endmacro %}

{#- Pre-hook: builds of this model one at a time (the scheduled build and a program's
    audience step both build contacts): a second build's delete+insert waits for the first
    to commit, then reads past it, instead of inserting a contact the first just did.
    With `relation`, waits for a build of that model instead (lead_score_history, for the
    components it compares). -#}
{% macro one_build_at_a_time(relation=none) %}
    select pg_advisory_xact_lock(hashtext('nurture:build:{{ relation or this }}'))
{% endmacro %}

{#- The config of a per-contact incremental model: `marks`, the call that gives the deletion
    marks it follows, and `rows`, the name of the macro rendering its rows, both as text
    for its post-hook. `unique_key`: another key for a table that also takes rows of
    other contacts (int_message_conversions, by message). -#}
{% macro incremental_by_contact(marks, rows, indexes=[{'columns': ['contact_id']}],
                                unique_key='contact_id') %}
    {{ config(
        materialized='incremental',
        unique_key=unique_key,
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=indexes,
        pre_hook=["{{ one_build_at_a_time() }}", "{{ forget_changed_contacts() }}"],
        post_hook=["{{ rebuild_after_deletions(" ~ marks ~ ", " ~ rows ~ ") }}",
                   "{{ remember_build_start() }}"],
    ) }}
{% endmacro %}
