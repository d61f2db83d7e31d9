-- Per program and contact: held out of its marketing or treated, and whether an enrollment
-- reached the program's goal after its first due message. program_holdout_comparison sums
-- these (2M rows at a million contacts) rather than grouping 4M messages on every build.
--
-- Incremental by contact: a build redoes the contacts with a message or a conversion input
-- loaded since the last one (changed_contacts.sql); every contact when a source of the
-- conversions lost rows (the post-hook).
{{ incremental_by_contact('conversion_source_marks()', 'program_contact_outcome_rows') }}

{{ program_contact_outcome_rows(changed_contacts(
    message_conversion_inputs_loaded_since(since_last_build()))) }}
