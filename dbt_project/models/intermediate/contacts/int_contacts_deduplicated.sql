-- A CRM merge can export the same contact twice: keep the most recently updated row.
with

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by contact_id
            order by updated_at desc nulls last, loaded_at desc
        ) as recency_rank
    from contacts

)

select * from ranked
where recency_rank = 1
