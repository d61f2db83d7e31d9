-- Answers are free-ish text from form dropdowns: lower-cased and put into the categories
-- lead scoring gives points for (see `lead_fit_points` in dbt_project.yml).
select
    -- ids
    contact_id,

    -- strings
    nullif(trim(job_title), '') as job_title,
    case
        when seniority ~* '^(c-?level|chief|ceo|cmo|cto|cfo|founder|owner)' then 'c_level'
        when seniority ~* '^(vp|vice president)' then 'vp'
        when seniority ~* '^(director|head)' then 'director'
        when seniority ~* '^manager' then 'manager'
        when nullif(trim(seniority), '') is not null then 'individual'
    end as seniority,
    case
        when job_title ~* '(marketing|growth|demand|lifecycle|crm|cmo)' then 'marketing'
        when job_title ~* '(sales|revenue|business development)' then 'sales'
        when nullif(trim(job_title), '') is not null then 'other'
    end as job_function,
    nullif(trim(company_name), '') as company_name,
    case
        when company_size >= 1000 then '1000+'
        when company_size >= 200 then '200-999'
        when company_size >= 50 then '50-199'
        when company_size >= 1 then '1-49'
    end as company_size,
    nullif(trim(lower(industry)), '') as industry,
    nullif(trim(lower(budget)), '') as budget,
    nullif(trim(lower(authority)), '') as authority,
    nullif(trim(lower(need)), '') as need,
    nullif(trim(lower(timeline)), '') as timeline,

    -- numerics
    company_size as employee_count,

    -- timestamps
    submitted_at,
    _loaded_at as loaded_at
from {{ source('web', 'lead_profiles') }}
