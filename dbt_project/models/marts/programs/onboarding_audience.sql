-- Everyone who entered onboarding, with what the planner needs to decide each step.
-- Contacts without consent or with bad addresses stay in: the planner records why it
-- sends them nothing.

-- Indexed by contact: the plan reads it in contact order, the dispatcher a batch's contacts.
-- Incremental: a build redoes the contacts whose sign-up, CRM row, consent or activation
-- was loaded since the last one (changed_contacts.sql), and every contact when a source
-- lost rows (the post-hook). An enrollment made stays when the CRM later moves the contact
-- out of `customer` (a full refresh drops it).
{{ incremental_by_contact('onboarding_source_marks()', 'onboarding_audience_rows') }}

{{ onboarding_audience_rows(changed_contacts(
    onboarding_inputs_loaded_since(since_last_build()))) }}
