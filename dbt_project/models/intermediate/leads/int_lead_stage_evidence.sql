-- What puts each contact at a stage of the funnel apart from its score: the CRM's current
-- stage, the profile form and form fills (a lead), and what sales said (accepted, won,
-- lost, rejected, recycled). One row per contact. lifecycle_funnel adds the score's MQL
-- crossing; nurture_audience reads when a lead entered and what sales said last.
--
-- A table, built once and read by both: as a view each would work it out for every contact
-- again, and the nurture audience would still wait for the funnel. Incremental: a build
-- redoes the contacts whose inputs were loaded since the last one (changed_contacts.sql),
-- and every contact when a source lost rows (the post-hook).
{{ incremental_by_contact('source_deletion_marks(lead_stage_sources())',
                          'lead_stage_evidence_rows',
                          indexes=[{'columns': ['contact_id'], 'unique': True}]) }}

{{ lead_stage_evidence_rows(changed_contacts(
    lead_stage_inputs_loaded_since(since_last_build()))) }}
