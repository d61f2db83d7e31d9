-- A CRM merge can export the same contact twice: keep the most recently updated row.
-- Rows with impossible dates are set aside first (marts.contacts_quarantined), so an older,
-- sound export of the same contact is kept rather than none.
-- `distinct on` rather than a row_number() = 1 filter: PostgreSQL estimates its rows from
-- the contact_id statistics, where it would take the filter for 0.5% of the rows and plan
-- the marts' joins over this view as nested loops (minutes at 100,000 contacts).
with

contacts as (

    select * from {{ ref('stg_crm__contacts') }}
    where {{ impossible_contact_dates() }} is not true

),

latest as (

    select distinct on (contact_id) *
    from contacts
    order by contact_id, updated_at desc nulls last, loaded_at desc

)

select * from latest
