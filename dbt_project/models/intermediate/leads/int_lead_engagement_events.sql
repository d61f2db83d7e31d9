-- Everything a contact did that shows interest, one row per event, with the points it is
-- worth when it happens (`lead_engagement_weights`); lead_scores decays them by age.
{%- set weights = var('lead_engagement_weights') %}
with

email_events as (

    -- The first open and the first click of each message count: a mail client that
    -- re-opens a message ten times shows no more interest than one that opens it once.
    select distinct on (events.ledger_id, events.event_name)
        events.sg_event_id as source_event_id,
        ledger.contact_id,
        'email_' || events.event_name as engagement_kind,
        events.occurred_at
    from {{ ref('stg_sendgrid__events') }} as events
    inner join {{ ref('stg_nurture__message_ledger') }} as ledger using (ledger_id)
    where events.event_name in ('open', 'click')
    order by events.ledger_id, events.event_name, events.occurred_at

),

webinars as (

    select
        attendance_id as source_event_id,
        contact_id,
        'webinar_attended' as engagement_kind,
        joined_at as occurred_at
    from {{ ref('stg_app__webinar_attendance') }}

),

page_visits as (

    select
        visit_id as source_event_id,
        contact_id,
        case when is_high_intent then 'high_intent_page_visit' else 'page_visit' end
            as engagement_kind,
        visited_at as occurred_at
    from {{ ref('stg_web__page_visits') }}

),

form_fills as (

    select
        fill_id as source_event_id,
        contact_id,
        'form_fill' as engagement_kind,
        filled_at as occurred_at
    from {{ ref('stg_web__form_fills') }}

),

unioned as (

    select * from email_events
    union all
    select * from webinars
    union all
    select * from page_visits
    union all
    select * from form_fills

),

final as (

    select
        engagement_kind || ':' || source_event_id as engagement_event_id,
        contact_id,
        engagement_kind,
        case engagement_kind
            {%- for kind, weight in weights.items() %}
            when '{{ kind }}' then {{ weight }}
            {%- endfor %}
            else 0
        end as base_weight,
        occurred_at
    from unioned
    where contact_id is not null and occurred_at is not null

)

select * from final
