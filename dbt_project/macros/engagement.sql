{#- Each contact's engagement points, every event aged to the contact's latest one
    (int_lead_engagement_by_contact). With `since_last_build`, only the contacts with an
    event loaded since the model's last build, or summed with another half-life. -#}
{% macro engagement_by_contact(since_last_build=false) %}
{%- set half_life = 'cast(' ~ var('lead_engagement_half_life_days') ~ ' as float8)' %}
with

events as (

    -- a contact's events are read by its index, for the few contacts a day brings
    select * from {{ ref('int_lead_engagement_events') }}
    {%- if since_last_build %}
    where contact_id in (
        select contact_id from {{ ref('int_lead_engagement_events') }}
        where {{ loaded_since_last_build('loaded_at') }}
        union all
        select contact_id from {{ this }} where half_life_days <> {{ half_life }}
    )
    {%- endif %}

),

aged as (

    select
        *,
        base_weight * {{ decay('last_engaged_at - occurred_at') }} as points
    from (
        select *, max(occurred_at) over (partition by contact_id) as last_engaged_at
        from events
    ) as events

)

select
    contact_id,
    {{ points_by_component() }},
    sum(points) as engagement_points,
    count(*) as engagement_event_count,
    max(last_engaged_at) as last_engaged_at,
    {{ half_life }} as half_life_days,
    max(loaded_at) as loaded_at
from aged
group by contact_id
{% endmacro %}

{#- After a build of int_lead_engagement_by_contact: when int_lead_engagement_events dropped
    events whose source row was gone since the sums' last build, sum every contact again, as
    a full refresh would. Told by the sources' deletion marks that table remembered
    (source_deletions.sql), not fresh ones: a row erased after it looked is dropped by its
    next build, and the sums must follow then. -#}
{% macro resum_engagement_after_deletions() %}
    {%- set marks = remembered_deletion_marks('int_lead_engagement_events') %}
    {%- if sources_with_deletions(marks) %}
    delete from {{ this }};
    insert into {{ this }}
    {{ engagement_by_contact() }};
    {%- endif %}
    {{ remember_deletion_marks(marks) }}
{% endmacro %}

{#- What a point is worth `interval` later: 0.5 ^ (interval in half-lives). In double
    precision: a numeric power() over every event took minutes at 100,000 contacts. At most
    1,000 half-lives: further on PostgreSQL raises an underflow instead of returning 0. -#}
{% macro decay(interval) -%}
    power(0.5, least(cast(extract(epoch from {{ interval }}) as float8) / 86400.0
                     / {{ var('lead_engagement_half_life_days') }}, 1000))
{%- endmacro %}

{#- `points` summed per component of the score (lead_scores' columns), events' kinds
    grouped as scoring groups them. -#}
{% macro points_by_component() -%}
    sum(points) filter (where engagement_kind like 'email_%') as email_points,
    sum(points) filter (where engagement_kind = 'webinar_attended') as webinar_points,
    sum(points) filter (where engagement_kind like '%page_visit') as page_visit_points,
    sum(points) filter (where engagement_kind = 'form_fill') as form_fill_points
{%- endmacro %}
