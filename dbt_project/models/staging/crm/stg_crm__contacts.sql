select
    -- ids
    contact_id,
    nullif(trim(owner_id), '') as owner_id,

    -- strings
    nullif(trim(lower(email)), '') as email,
    nullif(regexp_replace(phone, '[\s().-]', '', 'g'), '') as phone,
    nullif(trim(first_name), '') as first_name,
    nullif(trim(last_name), '') as last_name,
    nullif(trim(time_zone), '') as time_zone,
    nullif(trim(locale), '') as locale,
    lower(lifecycle_stage) as lifecycle_stage,

    -- timestamps
    lifecycle_stage_changed_at,
    created_at,
    updated_at,
    _loaded_at as loaded_at
from {{ source('crm', 'crm_contacts') }}
