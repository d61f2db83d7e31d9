with

source as (

    select * from {{ source('receiver', 'unsubscribe_requests') }}

),

renamed as (

    select
        -- ids
        token_digest as unsubscribe_request_id,
        contact_id,

        -- strings
        channel,
        source as request_source,

        -- timestamps
        received_at

    from source

)

select * from renamed
