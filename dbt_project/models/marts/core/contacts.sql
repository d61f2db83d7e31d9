-- One row per contact, its consent and activation: what every audience starts from.
--
-- Incremental: a build redoes the contacts whose CRM row, consent, activation or owner was
-- loaded since the last one (changed_contacts.sql), and every contact when a source lost
-- rows (the post-hook).
{{ incremental_by_contact('contact_source_marks()', 'contacts_rows', indexes=[]) }}

{{ contacts_rows(changed_contacts(
    contact_inputs_loaded_since(since_last_build()))) }}
