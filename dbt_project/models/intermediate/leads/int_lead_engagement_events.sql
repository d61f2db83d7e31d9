-- Everything a contact did that shows interest, one row per event, with the points it is
-- worth when it happens (`lead_engagement_weights`); lead_scores decays them by age.
--
-- Incremental, unlike the other intermediate models: its sources only grow, and reading
-- them whole (a regular expression per page visit) was most of a build. Nothing reads it
-- within a run, so a table is as live as the marts built from it. A build takes the rows
-- loaded since its newest row (a late event is loaded late, so it is taken too), and the
-- post-hook drops rows whose source row is gone. Indexed by contact, newest first, as
-- well: int_lead_engagement_by_contact reads the events of the contacts a build brings,
-- and nurture_audience each lead's five latest.
{{
    config(
        materialized='incremental',
        unique_key='engagement_event_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['engagement_event_id'], 'unique': True},
            {'columns': ['loaded_at']},
            {'columns': ['contact_id', 'occurred_at desc', 'engagement_event_id']},
        ],
        post_hook=["{{ delete_engagement_without_source() }}"],
    )
}}
{%- set weights = var('lead_engagement_weights') %}
with

email_events as (

    select
        events.sg_event_id,
        events.ledger_id,
        events.event_name,
        ledger.contact_id,
        events.occurred_at,
        events.received_at as loaded_at
    from {{ ref('stg_sendgrid__events') }} as events
    inner join {{ ref('stg_nurture__message_ledger') }} as ledger using (ledger_id)
    where events.event_name in ('open', 'click')
    {%- if is_incremental() %}
      and {{ loaded_since_last_build('events.received_at') }}
    {%- endif %}

),

{% if is_incremental() %}
-- A message's first open or click may already be here: the earliest of it and the new
-- events counts.
email_candidates as (

    select sg_event_id, ledger_id, event_name, contact_id, occurred_at, loaded_at
    from email_events

    union all

    select
        kept.source_event_id,
        new.ledger_id,
        new.event_name,
        kept.contact_id,
        kept.occurred_at,
        kept.loaded_at
    from {{ this }} as kept
    inner join (select distinct ledger_id, event_name from email_events) as new
        on kept.engagement_event_id = 'email_' || new.event_name || ':' || new.ledger_id

),
{% else %}
email_candidates as (

    select * from email_events

),
{% endif %}

first_email_events as (

    -- The first open and the first click of each message count: a mail client that
    -- re-opens a message ten times shows no more interest than one that opens it once.
    select distinct on (ledger_id, event_name)
        'email_' || event_name || ':' || ledger_id as engagement_event_id,
        sg_event_id as source_event_id,
        contact_id,
        'email_' || event_name as engagement_kind,
        occurred_at,
        loaded_at
    from email_candidates
    order by ledger_id, event_name, occurred_at, sg_event_id

),

webinars as (

    select
        'webinar_attended:' || attendance_id as engagement_event_id,
        attendance_id as source_event_id,
        contact_id,
        'webinar_attended' as engagement_kind,
        joined_at as occurred_at,
        loaded_at
    from {{ ref('stg_app__webinar_attendance') }}
    {%- if is_incremental() %}
    where {{ loaded_since_last_build('loaded_at') }}
    {%- endif %}

),

page_visits as (

    select
        case when is_high_intent then 'high_intent_page_visit' else 'page_visit' end
            || ':' || visit_id as engagement_event_id,
        visit_id as source_event_id,
        contact_id,
        case when is_high_intent then 'high_intent_page_visit' else 'page_visit' end
            as engagement_kind,
        visited_at as occurred_at,
        loaded_at
    from {{ ref('stg_web__page_visits') }}
    {%- if is_incremental() %}
    where {{ loaded_since_last_build('loaded_at') }}
    {%- endif %}

),

form_fills as (

    select
        'form_fill:' || fill_id as engagement_event_id,
        fill_id as source_event_id,
        contact_id,
        'form_fill' as engagement_kind,
        filled_at as occurred_at,
        loaded_at
    from {{ ref('stg_web__form_fills') }}
    {%- if is_incremental() %}
    where {{ loaded_since_last_build('loaded_at') }}
    {%- endif %}

),

unioned as (

    select * from first_email_events
    union all
    select * from webinars
    union all
    select * from page_visits
    union all
    select * from form_fills

),

final as (

    select
        engagement_event_id,
        source_event_id,
        contact_id,
        engagement_kind,
        case engagement_kind
            {%- for kind, weight in weights.items() %}
            when '{{ kind }}' then {{ weight }}
            {%- endfor %}
            else 0
        end as base_weight,
        occurred_at,
        loaded_at
    from unioned
    where contact_id is not null and occurred_at is not null

)

select * from final
{%- if not is_incremental() %}
-- a contact's events together on disk: the sums and the audience read them by contact,
-- and a year of them scattered by load time cost a page each
order by contact_id, occurred_at desc
{%- endif %}
