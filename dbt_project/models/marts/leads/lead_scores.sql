-- Each lead's score now: fit from the profile, plus engagement where every event's weight
-- halves each half-life: weight * 0.5 ^ (age_days / half_life_days).
--
-- A view: the clock is applied when it is read. The table under it
-- (int_lead_score_components, incremental) keeps each lead's engagement summed and aged to
-- its latest event; every event ages by the same factor from then on, so the view ages
-- 200k sums at a million contacts, not their 1.4M events, and a build redoes only the leads
-- that changed instead of all of them because time passed.
{{ config(materialized='view') }}

{{ lead_scores_now() }}
