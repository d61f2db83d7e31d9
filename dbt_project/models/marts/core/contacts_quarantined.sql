-- Source rows set aside before any audience sees them, each with its reason: the run
-- summary counts them, and a data owner fixes them at the source. Rows whose address,
-- phone or time zone is unusable stay in `contacts`: they cost only the messages that
-- need them, each skipped with its reason in the ledger.
--
-- Incremental: a build redoes the contacts with a CRM row or sign-up loaded since the last
-- one (changed_contacts.sql), and every contact when either source lost rows (the
-- post-hook). A contact's rows are only ever added to: a newer export supersedes the one
-- kept before.
{{
    config(
        materialized='incremental',
        unique_key='contact_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ one_build_at_a_time() }}",
        indexes=[{'columns': ['contact_id']}],
        post_hook=["{{ rebuild_after_deletions(source_deletion_marks(
                        [source('crm', 'crm_contacts'), source('app', 'signups')]),
                        quarantined_rows) }}",
                   "{{ remember_build_start() }}"],
    )
}}

{%- set since = since_last_build() %}
{{ quarantined_rows(changed_contacts(
    "select contact_id from " ~ ref('stg_crm__contacts') ~ " where loaded_at > " ~ since
    ~ " union all select contact_id from " ~ ref('stg_app__signups')
    ~ " where loaded_at > " ~ since)) }}
