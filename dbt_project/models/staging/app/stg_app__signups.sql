with

source as (

    select * from {{ source('app', 'signups') }}

),

renamed as (

    select
        -- ids
        signup_id,
        contact_id,

        -- strings
        lower(plan) as plan,

        -- timestamps
        signed_up_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
