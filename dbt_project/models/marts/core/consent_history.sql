-- Every consent change per contact and channel with its source and time; `is_current`
-- marks the change that decides today's consent (the same rule contacts applies).
--
-- Incremental: a build redoes the contacts whose consent changes were loaded since the last
-- one (changed_contacts.sql), and every contact when a source lost rows (the post-hook).
-- delete+insert replaces the contacts that still have changes: one whose only changes were
-- SMS replies, from a number the CRM has since taken off them, keeps those rows until a
-- full refresh (contacts' consent, read from the views, is right).
{{
    config(
        materialized='incremental',
        unique_key='contact_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ one_build_at_a_time() }}",
        indexes=[{'columns': ['contact_id']}],
        post_hook=["{{ rebuild_after_deletions(source_deletion_marks(consent_sources()),
                                               consent_history_rows) }}",
                   "{{ remember_build_start() }}"],
    )
}}

{{ consent_history_rows(changed_contacts(
    consent_inputs_loaded_since(since_last_build()))) }}
