-- One row per ledger entry with its outcome, shaped after Fivetran's email_sends.
with

ledger as (

    select * from {{ ref('stg_nurture__message_ledger') }}

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
        due_at,
        planned_at,
        sent_at
    from ledger

)

select * from final
