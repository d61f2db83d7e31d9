{#- The app events that count as activating (`activation_event`), of known contacts. -#}
{% macro activation_events() %}
    select contact_id, occurred_at, loaded_at
    from {{ ref('stg_app__events') }}
    where event_name = '{{ var("activation_event") }}' and contact_id is not null
{% endmacro %}

{#- Each activated contact's first activation and the newest load of their activation
    events (int_contact_activations); with `since_last_build`, only the contacts with an
    activation event loaded since the model's last build. -#}
{% macro activations_by_contact(since_last_build=false) %}
    -- the events are read twice, not through one CTE: PostgreSQL would read a CTE used
    -- twice whole, where the contacts' few events are found through the index
    select
        contact_id,
        min(occurred_at) as activated_at,
        max(loaded_at) as loaded_at
    from ({{ activation_events() }}) as activations
    {%- if since_last_build %}
    where contact_id in (select contact_id from ({{ activation_events() }}) as loaded
                         where {{ loaded_since_last_build('loaded_at') }})
    {%- endif %}
    group by contact_id
{% endmacro %}

{#- After a build of int_contact_activations: when app events were erased since the last
    build (source_deletions.sql), count every contact again, as a full refresh would. -#}
{% macro recount_activations_after_deletions() %}
    {%- set marks = source_deletion_marks([source('app', 'events')]) %}
    {%- if sources_with_deletions(marks) %}
    delete from {{ this }};
    insert into {{ this }} (contact_id, activated_at, loaded_at)
    {{ activations_by_contact() }};
    {%- endif %}
    {{ remember_deletion_marks(marks) }}
{% endmacro %}
