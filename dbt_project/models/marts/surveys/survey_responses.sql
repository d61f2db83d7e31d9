-- One row per survey answered, with the latest answer and the contact's current segment.
with

responses as (

    select * from {{ ref('stg_nurture__survey_responses') }}

),

contacts as (

    select * from {{ ref('contacts') }}

),

final as (

    select
        responses.survey_id,
        responses.contact_id,
        responses.channel,
        responses.trigger,
        coalesce(contacts.lifecycle_stage, 'unknown') as segment,
        responses.score,
        responses.nps_category,
        responses.comment,
        responses.answer_count,
        responses.issued_at,
        responses.first_answered_at,
        responses.answered_at
    from responses
    left join contacts using (contact_id)

)

select * from final
