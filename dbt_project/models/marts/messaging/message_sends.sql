-- One row per ledger entry with its outcome, shaped after Fivetran's email_sends.
with

ledger as (

    select * from {{ ref('stg_nurture__message_ledger') }}

),

email_outcomes as (

    select
        ledger_id,
        bool_or(event_name = 'delivered') as was_delivered,
        bool_or(event_name = 'open') as was_opened,
        bool_or(event_name = 'click') as was_clicked,
        bool_or(event_name = 'bounce') as was_bounced,
        bool_or(event_name = 'spamreport') as was_spam_reported,
        bool_or(event_name in ('unsubscribe', 'group_unsubscribe')) as was_unsubscribed
    from {{ ref('stg_sendgrid__events') }}
    where ledger_id is not null
    group by ledger_id

),

sms_outcomes as (

    select
        twilio_message_sid,
        bool_or(message_status = 'delivered') as was_delivered,
        bool_or(message_status in ('undelivered', 'failed')) as was_bounced
    from {{ ref('stg_twilio__status_callbacks') }}
    group by twilio_message_sid

),

final as (

    select
        ledger_id,
        program,
        step,
        contact_id,
        enrollment_id,
        dag_run_id,
        channel,
        state,
        reason,
        template_version,
        locale,
        case when channel = 'email' then provider_message_id end as sendgrid_message_id,
        case when channel = 'sms' then provider_message_id end as twilio_message_sid,
        state = 'sent' as was_sent,
        state = 'skipped' as was_skipped,
        state = 'failed' as was_failed,
        state = 'unknown' as is_outcome_unknown,
        coalesce(email_outcomes.was_delivered, sms_outcomes.was_delivered, false)
            as was_delivered,
        coalesce(email_outcomes.was_opened, false) as was_opened,
        coalesce(email_outcomes.was_clicked, false) as was_clicked,
        coalesce(email_outcomes.was_bounced, sms_outcomes.was_bounced, false) as was_bounced,
        coalesce(email_outcomes.was_spam_reported, false) as was_spam_reported,
        coalesce(email_outcomes.was_unsubscribed, false) as was_unsubscribed,
        due_at,
        planned_at,
        sent_at
    from ledger
    left join email_outcomes using (ledger_id)
    left join sms_outcomes
        on ledger.channel = 'sms' and sms_outcomes.twilio_message_sid = ledger.provider_message_id

)

select * from final
