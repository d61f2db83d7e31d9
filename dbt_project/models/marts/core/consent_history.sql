-- Every consent change per contact and channel with its source and time; `is_current`
-- marks the change that decides today's consent (the same rule contacts applies).
--
-- Incremental: a build redoes the contacts whose consent changes were loaded since the last
-- one (changed_contacts.sql), and every contact when a source lost rows (the post-hook).
-- delete+insert replaces the contacts that still have changes: one whose only changes were
-- SMS replies, from a number the CRM has since taken off them, keeps those rows until a
-- full refresh (contacts' consent, read from the views, is right).
{{ incremental_by_contact('source_deletion_marks(consent_sources())',
                          'consent_history_rows') }}

{{ consent_history_rows(changed_contacts(
    consent_inputs_loaded_since(since_last_build()))) }}
