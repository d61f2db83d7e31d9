-- Each contact's engagement points, every event aged to the contact's latest one
-- (`last_engaged_at`): weight * 0.5 ^ (days before it / half-life). Later, every event ages
-- by the same factor, so lead_scores ages these sums instead of every event:
--     points at T = points here * 0.5 ^ (days from last_engaged_at to T / half-life).
--
-- Incremental: a build redoes only the contacts with an event loaded since the last one
-- (their events are read by contact), and every contact when the half-life changed or a
-- source of the events lost rows (the post-hook), as a full refresh would. Indexed by
-- contact by its primary key (the contract), and by loaded_at for the components' builds.
{{
    config(
        materialized='incremental',
        unique_key='contact_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[{'columns': ['loaded_at']}],
        post_hook=["{{ resum_engagement_after_deletions() }}"],
    )
}}

{{ engagement_by_contact(since_last_build=is_incremental()) }}
