-- What "converted" means for each program, in one place: a row per program, contact and
-- enrollment (the ledger's keys) with the first time the contact reached the program's goal.
--   onboarding           activated the product (the program's goal, `is_activated`)
--   nurture              the lead's score crossed the MQL threshold (goal `is_mql`), in the
--                        nurture cycle the crossing fell in
--   webinar              attended the webinar
--   satisfaction_survey  answered the survey the message carried
-- A new program adds its goal here. Whether a message gets the credit (the conversion came
-- after it) is decided by the marts that read this.
--
-- A table, unlike the other intermediate models: a view would pin lead_score_history, and
-- resetting that history (drop table, as its tests do) would be refused.
{{ config(materialized='table') }}

with

activations as (

    select contact_id, activated_at from {{ ref('int_contact_activations') }}

),

onboarding as (

    select
        'onboarding' as program,
        enrollments.contact_id,
        enrollments.enrollment_id,
        'activated' as conversion,
        activations.activated_at as converted_at
    from {{ ref('int_onboarding_enrollments') }} as enrollments
    inner join activations using (contact_id)

),

-- The score history is state kept by lead scoring (incremental), not rebuildable from
-- sources: a crossing is a row that is an MQL where the one before was not.
score_history as (

    select
        contact_id,
        scored_at,
        is_mql,
        lag(is_mql) over (partition by contact_id order by scored_at) as was_mql
    from {{ ref('lead_score_history') }}

),

recycles as (

    select contact_id, feedback_id, recorded_at
    from {{ ref('stg_crm__sales_feedback') }}
    where outcome = 'recycled'

),

mql_crossings as (

    -- The cycle a crossing belongs to, named as nurture_audience names it: the first, or
    -- the one the latest recycling before the crossing began.
    select distinct on (score_history.contact_id, score_history.scored_at)
        score_history.contact_id,
        'nurture:' || score_history.contact_id || ':'
            || coalesce(recycles.feedback_id, 'first') as enrollment_id,
        score_history.scored_at as crossed_at
    from score_history
    left join recycles
        on recycles.contact_id = score_history.contact_id
        and recycles.recorded_at <= score_history.scored_at
    where score_history.is_mql and not coalesce(score_history.was_mql, false)
    order by score_history.contact_id, score_history.scored_at, recycles.recorded_at desc

),

nurture as (

    select
        'nurture' as program,
        contact_id,
        enrollment_id,
        'became_mql' as conversion,
        min(crossed_at) as converted_at
    from mql_crossings
    group by contact_id, enrollment_id

),

webinar as (

    select
        'webinar' as program,
        contact_id,
        'webinar:' || webinar_id as enrollment_id,
        'attended' as conversion,
        joined_at as converted_at
    from {{ ref('stg_app__webinar_attendance') }}

),

satisfaction_survey as (

    -- A survey's id is the ledger id of the message that carried its link.
    select
        'satisfaction_survey' as program,
        ledger.contact_id,
        ledger.enrollment_id,
        'answered_survey' as conversion,
        min(responses.first_answered_at) as converted_at
    from {{ ref('stg_nurture__survey_responses') }} as responses
    inner join {{ ref('stg_nurture__message_ledger') }} as ledger
        on cast(ledger.ledger_id as text) = responses.survey_id
    group by ledger.contact_id, ledger.enrollment_id

),

unioned as (

    select * from onboarding
    union all select * from nurture
    union all select * from webinar
    union all select * from satisfaction_survey

)

select * from unioned
