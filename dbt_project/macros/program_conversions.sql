{#- int_program_conversions' rows: every contact's, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro program_conversions_rows(changed=none) %}
with

activations as (

    select contact_id, activated_at from {{ ref('int_contact_activations') }}
    {{ where_contact_in(changed) }}

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
    {{ where_contact_in(changed, 'enrollments.contact_id') }}

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
    {{ where_contact_in(changed) }}

),

recycles as (

    select contact_id, feedback_id, recorded_at
    from {{ ref('stg_crm__sales_feedback') }}
    where outcome = 'recycled' {{ and_contact_in(changed) }}

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
    {{ where_contact_in(changed) }}

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
    {{ where_contact_in(changed, 'ledger.contact_id') }}
    group by ledger.contact_id, ledger.enrollment_id

),

unioned as (

    select * from onboarding
    union all select * from nurture
    union all select * from webinar
    union all select * from satisfaction_survey

)

select * from unioned
{% endmacro %}

{#- The contacts whose conversions may have changed since `mark`: an enrollment or an
    activation, a score row that is an MQL (a daily row of a lead below the threshold
    cannot make a crossing), a recycling (it names the cycle), an attendance, a survey
    answer. -#}
{% macro conversion_inputs_loaded_since(mark) %}
    {{ contacts_loaded_since(['stg_app__signups', 'stg_crm__contacts', 'int_contact_activations',
                              'stg_app__webinar_attendance'], mark) }}
    union all
    select contact_id from {{ ref('lead_score_history') }}
    where scored_at > {{ mark }} and is_mql
    union all
    select contact_id from {{ ref('stg_crm__sales_feedback') }}
    where loaded_at > {{ mark }} and outcome = 'recycled'
    union all
    select ledger.contact_id
    from {{ ref('stg_nurture__survey_responses') }} as responses
    inner join {{ ref('stg_nurture__message_ledger') }} as ledger
        on cast(ledger.ledger_id as text) = responses.survey_id
    where responses.answered_at > {{ mark }}
{% endmacro %}

{#- The deletion marks int_program_conversions follows: its sources', the score history's
    (a reset empties it), and for activations the marks int_contact_activations remembered.
-#}
{% macro conversion_source_marks() %}
    {%- set marks = source_deletion_marks([
            source('app', 'signups'), source('crm', 'crm_contacts'), ref('lead_score_history'),
            source('crm', 'sales_feedback'), source('app', 'webinar_attendance'),
            source('receiver', 'survey_responses'), source('nurture', 'message_ledger')]) %}
    {%- do marks.update(remembered_deletion_marks('int_contact_activations')) %}
    {{- return(marks) }}
{% endmacro %}
