-- A contact enters onboarding once: at their first sign-up, or when the CRM makes them a
-- customer, whichever came first. The enrollment id is per contact, not per entry event: a
-- late-arriving earlier entry must not become a new enrollment (and a second welcome).
with

signups as (

    select * from {{ ref('stg_app__signups') }}
    -- quarantined (marts.contacts_quarantined): never an enrollment
    where {{ impossible_date('signed_up_at') }} is not true

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
    'onboarding:' || contact_id as enrollment_id,
    enrollment_id as entry_event_id,
    entry_source,
    enrolled_at,
    loaded_at
from first_entry
where entry_rank = 1
