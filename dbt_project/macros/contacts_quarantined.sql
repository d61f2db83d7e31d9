{#- contacts_quarantined's rows: every contact's, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro quarantined_rows(changed=none) %}
with

crm_contacts as (

    select * from {{ ref('stg_crm__contacts') }}
    {{ where_contact_in(changed) }}

),

signups as (

    select * from {{ ref('stg_app__signups') }}
    {{ where_contact_in(changed) }}

),

impossible_crm_dates as (

    select
        contact_id,
        'crm_contacts' as source_table,
        'impossible_date' as reason,
        concat_ws(', ',
            case when {{ impossible_date('created_at') }} then 'created_at ' || created_at end,
            case when {{ impossible_date('updated_at') }} then 'updated_at ' || updated_at end,
            case when {{ impossible_date('lifecycle_stage_changed_at') }}
                then 'lifecycle_stage_changed_at ' || lifecycle_stage_changed_at end,
            case when updated_at < created_at then 'updated_at before created_at' end
        ) as detail,
        loaded_at
    from crm_contacts
    where {{ impossible_contact_dates() }} is true

),

superseded_duplicates as (

    -- the sound exports of a contact other than the one int_contacts_deduplicated keeps
    select
        contact_id,
        'crm_contacts' as source_table,
        'duplicate_contact' as reason,
        'an older export (updated ' || coalesce(updated_at::text, 'never') || ')' as detail,
        loaded_at
    from (
        select
            *,
            row_number() over (
                partition by contact_id order by updated_at desc nulls last, loaded_at desc
            ) as export_rank
        from crm_contacts
        where {{ impossible_contact_dates() }} is not true
    ) as sound
    where export_rank > 1

),

impossible_signups as (

    select
        contact_id,
        'signups' as source_table,
        'impossible_date' as reason,
        'signup ' || signup_id || ' signed_up_at ' || signed_up_at as detail,
        loaded_at
    from signups
    where {{ impossible_date('signed_up_at') }} is true

)

select * from impossible_crm_dates
union all
select * from superseded_duplicates
union all
select * from impossible_signups
{% endmacro %}

{% macro quarantine_source_marks() %}
    {{- return(source_deletion_marks([source('crm', 'crm_contacts'), source('app', 'signups')])) }}
{% endmacro %}
