{#- A timestamp no real event can have: later than a day after the row was loaded (clocks
    and time zones differ by hours, not days), or earlier than var('earliest_plausible_date').
    Such a row is quarantined (marts.contacts_quarantined), never planned for. -#}
{% macro impossible_date(column, loaded_at='loaded_at') -%}
    ({{ column }} > {{ loaded_at }} + interval '1 day'
     or {{ column }} < cast('{{ var("earliest_plausible_date") }}' as timestamptz))
{%- endmacro %}

{#- The CRM contact row's dates: any impossible one, or updated before it was created. -#}
{% macro impossible_contact_dates() -%}
    ({{ impossible_date('created_at') }}
     or {{ impossible_date('updated_at') }}
     or {{ impossible_date('lifecycle_stage_changed_at') }}
     or updated_at < created_at)
{%- endmacro %}
