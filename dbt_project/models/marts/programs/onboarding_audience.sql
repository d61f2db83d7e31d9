-- Everyone who entered onboarding, with what the planner needs to decide each step.
-- Contacts without consent or with bad addresses stay in: the planner records why it
-- sends them nothing.

-- Indexed by contact (its primary key): the plan reads it in contact order, the dispatcher
-- a batch's contacts.
-- Incremental: a build redoes the contacts whose sign-up, CRM row, consent or activation
-- was loaded since the last one (changed_contacts.sql), and every contact when a source
-- lost rows (the post-hook). Their rows are deleted first (forget_changed_contacts), so a
-- contact the CRM moves out of `customer` leaves, as in a full refresh.
{{ incremental_by_contact('onboarding_source_marks()', 'onboarding_audience_rows',
                          indexes=[{'columns': ['enrollment_id'], 'unique': True}]) }}

{{ onboarding_audience_rows(changed_contacts(
    onboarding_inputs_loaded_since(since_last_build()))) }}
