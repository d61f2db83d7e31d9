-- One row per contact: when they reached each stage of lead → MQL → sales accepted →
-- opportunity → customer, days between stages, where they stand now, and what sales said.
-- The stages outside the score come from int_lead_stage_evidence (the CRM, the forms,
-- sales); the MQL from scoring, else from the CRM.
--
-- Incremental: a build redoes the contacts whose stage evidence or score history changed
-- since the last one, and those whose MQL now moved with time (lifecycle_funnel.sql); every
-- contact when a source or the score history lost rows (the post-hook). Indexed by contact
-- by its primary key (the contract).
{{ incremental_by_contact("source_deletion_marks(lead_stage_sources() + [ref('lead_score_history')])",
                          'lifecycle_funnel_rows',
                          indexes=[]) }}

{{ lifecycle_funnel_rows(changed_contacts(
    lifecycle_funnel_inputs_loaded_since(since_last_build()))) }}
