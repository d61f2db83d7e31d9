-- Messages per program, step, variant and day: from the decision through delivery to the
-- program's goal. There are no A/B content variants yet: the variant is the template
-- version, a hash of the content actually sent, so a changed template starts a new one.
--
-- The counts come from int_message_outcomes_by_day, built beside lead scoring; only the
-- conversions are counted here, from the messages that converted (int_message_conversions'
-- index on converted_at), so a build does not aggregate every message after the score.
with

outcomes as (

    select * from {{ ref('int_message_outcomes_by_day') }}

),

conversions as (

    -- sent messages whose enrollment reached the program's goal after they went out
    select program, step, channel, variant, message_date, count(*) as converted
    from {{ ref('int_message_conversions') }}
    where converted_at is not null and converted_at >= sent_at and was_sent
    group by program, step, channel, variant, message_date

),

final as (

    select
        outcomes.program,
        outcomes.step,
        outcomes.channel,
        outcomes.variant,
        outcomes.message_date,
        outcomes.planned,
        outcomes.sent,
        outcomes.failed,
        outcomes.outcome_unknown,
        outcomes.held_out,
        outcomes.skipped,
        outcomes.deferred,
        outcomes.delivered,
        outcomes.opened,
        outcomes.clicked,
        outcomes.bounced,
        outcomes.unsubscribed,
        coalesce(conversions.converted, 0) as converted
    from outcomes
    left join conversions using (program, step, channel, variant, message_date)

)

select * from final
