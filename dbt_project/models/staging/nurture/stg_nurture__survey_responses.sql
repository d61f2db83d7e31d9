select
    -- ids
    survey_id,
    contact_id,

    -- strings
    channel,
    trigger,
    case
        when score >= 9 then 'promoter'
        when score >= 7 then 'passive'
        else 'detractor'
    end as nps_category,
    comment,

    -- numerics
    score,
    answer_count,

    -- timestamps
    issued_at,
    first_answered_at,
    answered_at
from {{ source('receiver', 'survey_responses') }}
