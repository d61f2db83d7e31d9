{#- int_lead_score_components' rows: every lead's, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro lead_score_component_rows(changed=none) %}
with

-- The leads: contacts in a scored stage, from the CRM's deduplicated exports rather than
-- marts.contacts (the same stage), so scoring, and the conversions and marts after it,
-- need not wait for contacts' consent.
leads as (

    select contact_id
    from {{ ref('int_contacts_deduplicated') }}
    where lifecycle_stage in ('{{ var("lead_scoring_stages") | join("', '") }}')
        {{ and_contact_in(changed) }}

),

fit as (

    select * from {{ ref('int_lead_fit_scores') }}
    {{ where_contact_in(changed) }}

),

sums as (

    select * from {{ ref('int_lead_engagement_by_contact') }}
    {{ where_contact_in(changed) }}

),

final as (

    select
        leads.contact_id,
        {%- for attribute in lead_fit_attributes() %}
        coalesce(fit.{{ attribute }}_points, 0) as {{ attribute }}_points,
        {%- endfor %}
        coalesce(fit.fit_score, 0) as fit_score,
        fit.submitted_at as profile_submitted_at,
        {%- for component in lead_engagement_components() %}
        coalesce(sums.{{ component }}_points, 0) as {{ component }}_points,
        {%- endfor %}
        coalesce(sums.engagement_points, 0) as engagement_points,
        coalesce(sums.engagement_event_count, 0) as engagement_event_count,
        sums.last_engaged_at,
        '{{ lead_scoring_version() }}' as scoring_version,
        -- when the row was written: lead_score_history compares the leads written since its
        -- own last build (score_history_candidates)
        statement_timestamp() as built_at
    from leads
    left join fit using (contact_id)
    left join sums using (contact_id)

)

select * from final
{% endmacro %}

{#- The contacts whose score components may have changed since `mark`: a CRM row (the
    stage), a profile form or an engagement sum loaded since; every lead when the scoring's
    vars changed since the last build (lead_scoring_version). -#}
{% macro lead_score_inputs_loaded_since(mark) %}
    {{ contacts_loaded_since(['stg_crm__contacts', 'stg_web__lead_profiles',
                              'int_lead_engagement_by_contact'], mark) }}
    union all
    select contact_id from {{ ref('int_contacts_deduplicated') }}
    where exists (
        select from {{ this }} where scoring_version <> '{{ lead_scoring_version() }}'
    )
{% endmacro %}

{#- The CRM's and the profiles' deletion marks, and those the engagement events remembered:
    the sums are summed again after those (resum_engagement_after_deletions). -#}
{% macro lead_score_source_marks() %}
    {%- set marks = source_deletion_marks([source('crm', 'crm_contacts'),
                                           source('web', 'lead_profiles')]) %}
    {%- do marks.update(remembered_deletion_marks('int_lead_engagement_events')) %}
    {{- return(marks) }}
{% endmacro %}

{#- What the components depend on beyond the data: the stages scored, the fit points and
    the half-life the sums were aged with. -#}
{% macro lead_scoring_version() %}
    {{- return(local_md5(tojson([var('lead_scoring_stages'), var('lead_fit_points'),
                                 var('lead_engagement_half_life_days')]))) }}
{% endmacro %}

{% macro lead_fit_attributes() %}
    {{- return(['seniority', 'job_function', 'company_size', 'industry',
                'budget', 'authority', 'need', 'timeline']) }}
{% endmacro %}

{% macro lead_engagement_components() %}
    {{- return(['email', 'webinar', 'page_visit', 'form_fill']) }}
{% endmacro %}
