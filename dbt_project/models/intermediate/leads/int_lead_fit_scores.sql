-- Fit: points for who the lead is, from their profile-form answers and the points per
-- answer in the `lead_fit_points` var; an answer the var does not list scores 0.
{%- set points = var('lead_fit_points') %}
{%- set attributes = lead_fit_attributes() %}
with

profiles as (

    select * from {{ ref('stg_web__lead_profiles') }}

),

scored as (

    select
        contact_id,
        {%- for attribute in attributes %}
        case {{ attribute }}
            {%- for answer, value in points.get(attribute, {}).items() %}
            when '{{ answer }}' then {{ value }}
            {%- endfor %}
            else 0
        end as {{ attribute }}_points,
        {%- endfor %}
        submitted_at
    from profiles

),

final as (

    select
        *,
        {% for attribute in attributes -%}
        {{ attribute }}_points{{ ' + ' if not loop.last }}
        {%- endfor %} as fit_score
    from scored

)

select * from final
