-- What happened to the messages, per program, step, variant and UTC day: program_performance's
-- counts but the conversions, from message_sends alone.
--
-- A table of its own so that the 4M-message aggregate runs beside lead scoring instead of
-- after it: only the conversions wait for the score history (int_program_conversions),
-- and program_performance adds them from the messages that converted.
{{ config(materialized='table') }}
with

messages as (

    select
        program,
        step,
        channel,
        {{ message_variant('sends') }} as variant,
        {{ message_date('sends') }} as message_date,
        state,
        reason,
        was_sent,
        was_delivered,
        was_opened,
        was_clicked,
        was_bounced,
        was_unsubscribed
    from {{ ref('message_sends') }} as sends

),

final as (

    select
        program,
        step,
        channel,
        variant,
        message_date,
        count(*) filter (where state in ('planned', 'sending', 'sent', 'failed', 'unknown'))
            as planned,
        count(*) filter (where was_sent) as sent,
        count(*) filter (where state = 'failed') as failed,
        count(*) filter (where state = 'unknown') as outcome_unknown,
        count(*) filter (where state = 'skipped' and reason = 'held_out') as held_out,
        count(*) filter (where state = 'skipped' and reason <> 'held_out') as skipped,
        count(*) filter (where state = 'deferred') as deferred,
        count(*) filter (where was_sent and was_delivered) as delivered,
        count(*) filter (where was_sent and was_opened) as opened,
        count(*) filter (where was_sent and was_clicked) as clicked,
        count(*) filter (where was_sent and was_bounced) as bounced,
        count(*) filter (where was_sent and was_unsubscribed) as unsubscribed
    from messages
    group by program, step, channel, variant, message_date

)

select * from final
