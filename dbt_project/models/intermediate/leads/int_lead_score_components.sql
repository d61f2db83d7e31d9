-- What each lead's score is made of, free of the clock: fit from the profile, and the
-- engagement sums aged to the lead's latest event (int_lead_engagement_by_contact).
-- lead_scores, a view, ages them to the moment it is read.
--
-- Incremental: a build redoes the leads whose CRM row, profile or engagement was loaded
-- since the last one (changed_contacts.sql), every lead when the scoring's vars changed,
-- and every lead when a source lost rows (the post-hook).
{{ incremental_by_contact('lead_score_source_marks()', 'lead_score_component_rows',
                          indexes=[{'columns': ['contact_id'], 'unique': True},
                                   {'columns': ['last_engaged_at']}]) }}

{{ lead_score_component_rows(changed_contacts(
    lead_score_inputs_loaded_since(since_last_build()))) }}
