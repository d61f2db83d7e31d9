select
    -- ids
    fill_id,
    contact_id,

    -- strings
    lower(form_name) as form_name,

    -- timestamps
    filled_at,
    _loaded_at as loaded_at
from {{ source('web', 'form_fills') }}
