-- What happened to the messages, per program, step, variant and UTC day: program_performance's
-- counts but the conversions, from message_sends alone.
--
-- A table of its own so that the 4M-message aggregate runs beside lead scoring instead of
-- after it: only the conversions wait for the score history (int_program_conversions),
-- and program_performance adds them from the messages that converted.
--
-- Incremental by day: a build counts again the days whose messages changed since the last
-- one (message_outcomes.sql), and every day when the ledger lost rows (the post-hook).
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        indexes=[{'columns': ['message_date']}],
        pre_hook=["{{ one_build_at_a_time() }}", "{{ forget_touched_days() }}"],
        post_hook=["{{ rebuild_after_deletions("
                   "source_deletion_marks([source('nurture', 'message_ledger')]),"
                   " message_outcome_rows) }}"],
    )
}}

{{ message_outcome_rows(message_days_touched()) }}
