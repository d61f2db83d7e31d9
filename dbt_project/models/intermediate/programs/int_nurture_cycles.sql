-- The lead nurture program's cycles, free of the clock: one row per lead marketing still
-- owns, with when its cycle began, its track so far, who it is, who owns it, its five
-- latest events, when its score first crossed the MQL threshold in the cycle and when
-- sales worked it after. nurture_audience, a view, adds the score as of when it is read.
--
-- Incremental: a build redoes the leads whose inputs were loaded since the last one
-- (nurture_cycles.sql), and every lead when a source lost rows (the post-hook).
{{ incremental_by_contact('nurture_cycle_source_marks()', 'nurture_cycle_rows',
                          indexes=[{'columns': ['contact_id'], 'unique': True}]) }}

{{ nurture_cycle_rows(changed_contacts(
    nurture_cycle_inputs_loaded_since(since_last_build()))) }}
