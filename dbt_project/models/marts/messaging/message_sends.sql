-- One row per ledger entry with its outcome, shaped after Fivetran's email_sends.
--
-- Incremental: a build redoes only the messages whose ledger row changed or that got a
-- provider event since the last build, however old the message. An outcome flag, once set,
-- stays set, so an old flag or'ed with the new events' is what all events would give.
{%- set flags = ['was_delivered', 'was_opened', 'was_clicked', 'was_bounced',
                 'was_spam_reported', 'was_unsubscribed'] %}
{{
    config(
        materialized='incremental',
        unique_key='ledger_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[{'columns': ['source_loaded_at']}, {'columns': ['contact_id']}],
        post_hook=["{{ delete_sends_without_ledger_row() }}"],
    )
}}
-- The ledger is read where it is used, not through a shared CTE: PostgreSQL would read a
-- CTE used three times whole (millions of rows) where each use needs a few by their key.
with

email_outcomes as (

    select
        ledger_id,
        bool_or(event_name = 'delivered') as was_delivered,
        bool_or(event_name = 'open') as was_opened,
        bool_or(event_name = 'click') as was_clicked,
        bool_or(event_name = 'bounce') as was_bounced,
        bool_or(event_name = 'spamreport') as was_spam_reported,
        bool_or(event_name in ('unsubscribe', 'group_unsubscribe')) as was_unsubscribed,
        max(received_at) as received_at
    from {{ ref('stg_sendgrid__events') }}
    where ledger_id is not null
    {%- if is_incremental() %}
      and {{ loaded_since_last_build('received_at', 'source_loaded_at') }}
    {%- endif %}
    group by ledger_id

),

sms_outcomes as (

    select
        twilio_message_sid,
        bool_or(message_status = 'delivered') as was_delivered,
        bool_or(message_status in ('undelivered', 'failed')) as was_bounced,
        max(received_at) as received_at
    from {{ ref('stg_twilio__status_callbacks') }}
    {%- if is_incremental() %}
    where {{ loaded_since_last_build('received_at', 'source_loaded_at') }}
    {%- endif %}
    group by twilio_message_sid

),

-- SendGrid's events by the ledger id they carry, Twilio's callbacks by message SID.
provider_outcomes as (

    select
        ledger.ledger_id,
        {%- for flag in flags %}
        email_outcomes.{{ flag }},
        {%- endfor %}
        email_outcomes.received_at
    from email_outcomes
    inner join {{ ref('stg_nurture__message_ledger') }} as ledger
        on ledger.ledger_id = email_outcomes.ledger_id and ledger.channel = 'email'

    union all

    select
        ledger.ledger_id,
        sms_outcomes.was_delivered,
        false,
        false,
        sms_outcomes.was_bounced,
        false,
        false,
        sms_outcomes.received_at
    from sms_outcomes
    inner join {{ ref('stg_nurture__message_ledger') }} as ledger
        on ledger.channel = 'sms' and ledger.provider_message_id = sms_outcomes.twilio_message_sid

),

{% if is_incremental() %}
-- Messages whose ledger row or provider events changed since the last build, each found
-- through its own index (an `or` of the two would read the whole ledger).
changed as (

    select ledger_id from {{ ref('stg_nurture__message_ledger') }}
    where {{ loaded_since_last_build('updated_at', 'source_loaded_at') }}

    union

    select ledger_id from provider_outcomes

),

messages as (

    select ledger.*
    from {{ ref('stg_nurture__message_ledger') }} as ledger
    inner join changed using (ledger_id)

),
{% else %}
messages as (

    select * from {{ ref('stg_nurture__message_ledger') }}

),
{% endif %}

final as (

    select
        messages.ledger_id,
        messages.program,
        messages.step,
        messages.contact_id,
        messages.enrollment_id,
        messages.dag_run_id,
        messages.channel,
        messages.state,
        messages.reason,
        messages.template_version,
        messages.locale,
        case when messages.channel = 'email' then messages.provider_message_id end
            as sendgrid_message_id,
        case when messages.channel = 'sms' then messages.provider_message_id end
            as twilio_message_sid,
        messages.state = 'sent' as was_sent,
        messages.state = 'skipped' as was_skipped,
        messages.state = 'failed' as was_failed,
        messages.state = 'unknown' as is_outcome_unknown,
        {%- for flag in flags %}
        {% if is_incremental() %}coalesce(previous.{{ flag }}, false) or {% endif -%}
        coalesce(provider_outcomes.{{ flag }}, false) as {{ flag }},
        {%- endfor %}
        messages.due_at,
        messages.planned_at,
        messages.sent_at,
        greatest(
            messages.updated_at,
            provider_outcomes.received_at
            {%- if is_incremental() %}, previous.source_loaded_at{% endif %}
        ) as source_loaded_at
    from messages
    left join provider_outcomes using (ledger_id)
    {%- if is_incremental() %}
    left join {{ this }} as previous using (ledger_id)
    {%- endif %}

)

select * from final
