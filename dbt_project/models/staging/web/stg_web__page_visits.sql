select
    -- ids
    visit_id,
    contact_id,

    -- strings
    url,
    coalesce(nullif(substring(url from '^[a-z]+://[^/?#]+(/[^?#]*)'), ''), '/') as page_path,

    -- booleans
    -- pricing and demo pages say "buying", the rest say "reading"
    substring(url from '^[a-z]+://[^/?#]+(/[^?#]*)') ~ '^/(pricing|demo)(/|$)'
        as is_high_intent,

    -- timestamps
    visited_at,
    _loaded_at as loaded_at
from {{ source('web', 'page_visits') }}
