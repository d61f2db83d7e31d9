-- Every consent change per contact and channel with its source and time; `is_current`
-- marks the change that decides today's consent (the same rule contacts applies).
--
-- Incremental: a build redoes the contacts whose consent changes were loaded since the last
-- one (changed_contacts.sql), and every contact when a source lost rows (the post-hook).
-- Their rows are deleted first (forget_changed_contacts): a contact whose only changes were
-- SMS replies, from a number the CRM has since taken off them, is left with none.
{{ incremental_by_contact('source_deletion_marks(consent_sources())',
                          'consent_history_rows') }}

{{ consent_history_rows(changed_contacts(
    consent_inputs_loaded_since(since_last_build()))) }}
