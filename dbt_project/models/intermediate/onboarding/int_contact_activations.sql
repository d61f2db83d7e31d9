-- One row per contact who activated (`activation_event`): the first time, and when their
-- activation events were last loaded. contacts and int_program_conversions both read it,
-- so a build reads the app events for it once.
--
-- Incremental: a build redoes only the contacts with an activation event loaded since the
-- last one (app events are indexed by contact). After app events were erased, the post-hook
-- redoes every contact, as a full refresh would.
{{
    config(
        materialized='incremental',
        unique_key='contact_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[{'columns': ['contact_id'], 'unique': True}],
        post_hook=["{{ recount_activations_after_deletions() }}"],
    )
}}

{{ activations_by_contact(since_last_build=is_incremental()) }}
