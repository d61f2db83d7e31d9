-- A contact enters onboarding at their first sign-up, or when the CRM makes them a customer,
-- whichever came first. The enrollment id names that event, so a ledger row says why it exists.
with

signups as (

    select * from {{ ref('stg_app__signups') }}

),

contacts as (

    select * from {{ ref('int_contacts_deduplicated') }}

),

entries as (

    select
        contact_id,
        'signup:' || signup_id as enrollment_id,
        'signup' as entry_source,
        signed_up_at as enrolled_at,
        loaded_at
    from signups

    union all

    select
        contact_id,
        'crm_customer:' || contact_id as enrollment_id,
        'crm_customer' as entry_source,
        lifecycle_stage_changed_at as enrolled_at,
        loaded_at
    from contacts
    where lifecycle_stage = 'customer'
      and lifecycle_stage_changed_at is not null

),

first_entry as (

    select
        *,
        row_number() over (
            partition by contact_id
            order by enrolled_at, enrollment_id
        ) as entry_rank
    from entries

)

select
    contact_id,
    enrollment_id,
    entry_source,
    enrolled_at,
    loaded_at
from first_entry
where entry_rank = 1
