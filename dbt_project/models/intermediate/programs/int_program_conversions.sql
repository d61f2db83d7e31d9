-- What "converted" means for each program, in one place: a row per program, contact and
-- enrollment (the ledger's keys) with the first time the contact reached the program's goal.
--   onboarding           activated the product (the program's goal, `is_activated`)
--   nurture              the lead's score crossed the MQL threshold (goal `is_mql`), in the
--                        nurture cycle the crossing fell in
--   webinar              attended the webinar
--   satisfaction_survey  answered the survey the message carried
-- A new program adds its goal here. Whether a message gets the credit (the conversion came
-- after it) is decided by the marts that read this.
--
-- A table, unlike the other intermediate models: a view would pin lead_score_history, and
-- resetting that history (drop table, as its tests do) would be refused. Incremental: a
-- build redoes the contacts whose inputs were loaded since the last one
-- (changed_contacts.sql), and every contact when a source lost rows (the post-hook).
-- One row per program, contact and enrollment (its unique index): more would count a
-- conversion twice in the performance marts.
{{ incremental_by_contact('conversion_source_marks()', 'program_conversions_rows',
                          indexes=[{'columns': ['contact_id']},
                                   {'columns': ['program', 'contact_id', 'enrollment_id'],
                                    'unique': True}]) }}

{{ program_conversions_rows(changed_contacts(
    conversion_inputs_loaded_since(since_last_build()))) }}
