-- Who each upcoming webinar is for (contacts whose lifecycle stage it targets), but only
-- while a message to them can fall due: the invitation, sent 14 days before and open for
-- 2 days, and the last call to those it went to, 3 days before and open for a day — each
-- from a day ahead, so the frequency cap sees it coming (nurture.policies.LOOKAHEAD).
-- Between and after those windows nothing is owed to someone who has not registered, and
-- every contact × every upcoming webinar would be millions of rows. Registrants are in
-- the webinar audience whatever the window. The windows follow dags/webinar.py;
-- tests/test_webinars.py checks them against the program.
-- Only who: int_webinar_audience_members adds what their messages need.
--
-- Incremental by contact: a build redoes the contacts whose CRM row or invitation changed
-- since the last one; every contact when a webinar changed, a window opened or closed
-- since the last build (webinars.sql), or a source lost rows (the post-hook).
{{ incremental_by_contact('source_deletion_marks(webinar_invitee_sources())',
                          'webinar_invitee_rows',
                          indexes=[{'columns': ['contact_id', 'webinar_id']}]) }}

{{ webinar_invitee_rows(changed_contacts(webinar_invitee_inputs_loaded_since(since_last_build()))) }}
