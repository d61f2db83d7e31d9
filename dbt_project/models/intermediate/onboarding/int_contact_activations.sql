-- One row per contact who activated (`activation_event`): the first time, and when their
-- activation events were last loaded. contacts and int_program_conversions both read it, so
-- a build reads the app events for it once.
--
-- A table, rebuilt each build: the raw events have no index, so telling an erased or
-- changed activation apart (as an incremental build must) would read them all anyway.
-- A unique index holds the one row per contact as rows go in.
{{ config(materialized='table', indexes=[{'columns': ['contact_id'], 'unique': True}]) }}

select
    contact_id,
    min(occurred_at) as activated_at,
    max(loaded_at) as loaded_at
from {{ ref('stg_app__events') }}
where event_name = '{{ var("activation_event") }}' and contact_id is not null
group by contact_id
