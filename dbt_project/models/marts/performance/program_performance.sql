-- Messages per program, step, variant and day: from the decision through delivery to the
-- program's goal. There are no A/B content variants yet: the variant is the template
-- version, a hash of the content actually sent, so a changed template starts a new one.
--
-- With two parallel workers, unlike the other models: it comes last in a build, after the
-- per-message table, when dbt's other threads are done and the cores idle; they halve its
-- 4M-row aggregate.
{{ config(pre_hook="set max_parallel_workers_per_gather = 2") }}
with

messages as (

    -- each message with its step, variant, day, outcome and conversion
    -- (int_message_conversions, incremental)
    select
        *,
        -- the message's enrollment reached the program's goal after it went out
        coalesce(converted_at >= sent_at, false) as has_converted
    from {{ ref('int_message_conversions') }}

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
