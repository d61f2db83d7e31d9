select
    -- ids
    feedback_id,
    contact_id,
    nullif(trim(recorded_by), '') as recorded_by_user_id,

    -- strings
    lower(trim(outcome)) as outcome,
    nullif(trim(reason), '') as reason,

    -- timestamps
    recorded_at,
    _loaded_at as loaded_at
from {{ source('crm', 'sales_feedback') }}
