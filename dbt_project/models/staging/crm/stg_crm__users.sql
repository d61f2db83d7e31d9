select
    -- ids
    user_id,

    -- strings
    full_name,
    nullif(trim(lower(email)), '') as email,
    lower(role) as role,

    -- timestamps
    _loaded_at as loaded_at
from {{ source('crm', 'crm_users') }}
