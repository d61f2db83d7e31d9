-- Source rows set aside before any audience sees them, each with its reason: the run
-- summary counts them, and a data owner fixes them at the source. Rows whose address,
-- phone or time zone is unusable stay in `contacts`: they cost only the messages that
-- need them, each skipped with its reason in the ledger.
--
-- Incremental: a build redoes the contacts with a CRM row or sign-up loaded since the last
-- one (changed_contacts.sql), and every contact when either source lost rows (the
-- post-hook). A contact's rows are only ever added to: a newer export supersedes the one
-- kept before.
{{ incremental_by_contact('quarantine_source_marks()', 'quarantined_rows') }}

{{ quarantined_rows(changed_contacts(
    contacts_loaded_since(['stg_crm__contacts', 'stg_app__signups'], since_last_build()))) }}
