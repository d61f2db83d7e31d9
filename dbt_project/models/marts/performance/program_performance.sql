-- Messages per program, step, variant and day: from the decision through delivery to the
-- program's goal. There are no A/B content variants yet: the variant is the template
-- version, a hash of the content actually sent, so a changed template starts a new one.
with

sends as (

    select * from {{ ref('message_sends') }}

),

conversions as (

    select * from {{ ref('int_program_conversions') }}

),

messages as (

    select
        sends.program,
        sends.step,
        sends.channel,
        coalesce(sends.template_version, 'none') as variant,
        -- the day it was sent; for a message not sent, the day it was decided
        cast(coalesce(sends.sent_at, sends.planned_at) at time zone 'UTC' as date)
            as message_date,
        sends.state,
        sends.reason,
        sends.was_sent,
        sends.was_delivered,
        sends.was_opened,
        sends.was_clicked,
        sends.was_bounced,
        sends.was_unsubscribed,
        -- the message's enrollment reached the program's goal after it went out
        coalesce(conversions.converted_at >= sends.sent_at, false) as has_converted
    from sends
    left join conversions using (program, contact_id, enrollment_id)

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
        count(*) filter (where was_sent and was_unsubscribed) as unsubscribed,
        count(*) filter (where was_sent and has_converted) as converted
    from messages
    group by program, step, channel, variant, message_date

)

select * from final
