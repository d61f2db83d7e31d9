-- One row per contact, its consent and activation: what every audience starts from.
--
-- Incremental: a build redoes the contacts whose CRM row, consent, activation or owner was
-- loaded since the last one (changed_contacts.sql), and every contact when a source lost
-- rows (the post-hook).
{{
    config(
        materialized='incremental',
        unique_key='contact_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ one_build_at_a_time() }}",
        post_hook=["{{ rebuild_after_deletions(contact_source_marks(), contacts_rows) }}",
                   "{{ remember_build_start() }}"],
    )
}}

{{ contacts_rows(changed_contacts(
    contact_inputs_loaded_since(since_last_build()))) }}
