-- Net Promoter Score per month (of the first answer, in UTC), trigger and segment.
with

responses as (

    select * from {{ ref('survey_responses') }}

),

counted as (

    select
        cast(date_trunc('month', first_answered_at at time zone 'UTC') as date) as month,
        trigger,
        segment,
        count(*) as responses,
        count(*) filter (where nps_category = 'promoter') as promoters,
        count(*) filter (where nps_category = 'passive') as passives,
        count(*) filter (where nps_category = 'detractor') as detractors
    from responses
    group by 1, 2, 3

),

final as (

    select
        month,
        'satisfaction_survey' as program,
        trigger,
        segment,
        responses,
        promoters,
        passives,
        detractors,
        round(100.0 * (promoters - detractors) / responses, 1) as nps
    from counted

)

select * from final
