-- Who the webinar audience is: one row per contact and webinar, for everyone a webinar is
-- for (invitations) and everyone registered in the last 60 days (confirmations, reminders,
-- follow-ups), with what their messages need of contact and webinar worked out once per
-- build. A table: working these rows out through their joins on every read (700k rows at a
-- million contacts) took most of the guard's and the plan's time. The audience view joins
-- the registrations and seats to it when read. The DAG builds it before each plan, as it
-- does the other audiences.
--
-- Incremental by contact: a build redoes the invitees' changed contacts, and those whose
-- contact row or registration changed or whose registration left the 60 days since the
-- last one (webinars.sql); every contact when a source lost rows (the post-hook).
{{ incremental_by_contact('webinar_member_source_marks()', 'webinar_member_rows',
                          indexes=[{'columns': ['contact_id', 'webinar_id']}]) }}

{{ webinar_member_rows(changed_contacts(webinar_member_inputs_loaded_since(since_last_build()))) }}
