-- Who each upcoming webinar is for: contacts whose lifecycle stage it targets.
with

webinars as (

    select * from {{ ref('stg_app__webinars') }}
    where starts_at > now() - interval '1 day'

),

contacts as (

    select contact_id, lifecycle_stage from {{ ref('int_contacts_deduplicated') }}

),

final as (

    select
        webinars.webinar_id,
        contacts.contact_id
    from webinars
    inner join contacts
        on contacts.lifecycle_stage = webinars.audience_stage
        or webinars.audience_stage = 'all'

)

select * from final
