select
    -- ids
    signup_id,
    contact_id,

    -- strings
    lower(plan) as plan,

    -- timestamps
    signed_up_at,
    _loaded_at as loaded_at
from {{ source('app', 'signups') }}
