-- The satisfaction survey's audience, read by the `satisfaction_survey` DAG. Two kinds of
-- rows: a milestone that earns the contact a survey (`triggered_at`), and an answer that
-- may alert the contact's account owner (`detractor_at`, set for scores 0-6).

-- Indexed by contact: the plan reads it in contact order, the dispatcher a batch's contacts.
-- Incremental: a build redoes the contacts whose inputs were loaded since the last one,
-- and those with a milestone that fell out of the 30 days (survey_audience.sql); every
-- contact when a source lost rows (the post-hook).
{{ incremental_by_contact('survey_audience_source_marks()', 'survey_audience_rows',
                          indexes=[{'columns': ['contact_id']},
                                   {'columns': ['enrollment_id'], 'unique': True}]) }}

{{ survey_audience_rows(changed_contacts(
    survey_audience_inputs_loaded_since(since_last_build()))) }}

