select
    -- ids
    ledger_id,
    program,
    step,
    contact_id,
    enrollment_id,
    dag_run_id,
    provider_message_id,

    -- strings
    channel,
    state,
    reason,
    template_version,
    locale,

    -- timestamps
    due_at,
    planned_at,
    sent_at,
    updated_at
from {{ source('nurture', 'message_ledger') }}
