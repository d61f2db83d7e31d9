{#- int_message_outcomes_by_day's rows: every day's, or those of the `days` (a date[]
    literal, message_days_touched). -#}
{% macro message_outcome_rows(days=none) %}
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
        was_unsubscribed,
        source_loaded_at
    from {{ ref('message_sends') }} as sends
    {%- if days is not none %}
    where {{ message_date('sends') }} = any({{ days }})
    {%- endif %}

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
        max(source_loaded_at) as loaded_at
    from messages
    group by program, step, channel, variant, message_date

)

select * from final
{% endmacro %}

{#- The UTC days whose counts may have changed since the last build, as a literal
    `'{...}'::date[]` written into the query; none when built whole. A message rewritten
    into message_sends since (its source_loaded_at) counts on its day now, and was counted
    on its day then: the same, or the day it was decided when it was not sent yet. Deciding
    a deferred message again moves it to today (ledger.record): every day that held one. -#}
{% macro message_days_touched() %}
    {%- if not execute or not is_incremental() %}{{ return(none) }}{% endif %}
    {%- set found = run_query(
            "select coalesce(array_agg(distinct day)::text, '{}') from ("
            ~ " select day from " ~ ref('message_sends') ~ " as sends"
            ~ " cross join lateral (values (" ~ message_date('sends') ~ "),"
            ~ " (cast(sends.planned_at at time zone 'UTC' as date))) as days (day)"
            ~ " where " ~ loaded_since_last_build('source_loaded_at')
            ~ " union all select message_date from " ~ this ~ " where deferred > 0"
            ~ ") as touched") %}
    {{- return(marked_array('touched days', found.rows[0][0], 'date')) }}
{% endmacro %}

{#- Pre-hook: delete the rows of the days this build counts again (the array
    message_days_touched wrote into its query), so that a day no message is on any more
    leaves too. -#}
{% macro forget_touched_days() %}
    {%- if is_incremental() %}
    {%- set days = array_marked_in_query('touched days') %}
    {%- if not days %}
    {{ exceptions.raise_compiler_error("forget_touched_days: no touched days in " ~ this) }}
    {%- endif %}
    delete from {{ this }} where message_date = any({{ days }})
    {%- endif %}
{% endmacro %}
