{#- survey_audience's rows: every contact's, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro survey_audience_rows(changed=none) %}
with

triggers as (

    select * from {{ ref('int_survey_triggers') }}
    where triggered_at > now() - interval '30 days' {{ and_contact_in(changed) }}

),

responses as (

    select * from {{ ref('survey_responses') }}
    {{ where_contact_in(changed) }}

),

-- Not filtered to the changed contacts: read through its index for the few rows a build
-- redoes (filtered too, PostgreSQL would take the join for a handful of rows).
contacts as (

    select * from {{ ref('contacts') }}

),

recent_tickets as (

    select
        contact_id,
        string_agg(subject || ' (' || status || ')', '; ' order by opened_at desc)
            as recent_tickets
    from (
        select *, row_number() over (partition by contact_id order by opened_at desc) as n
        from {{ ref('stg_support__tickets') }}
        {{ where_contact_in(changed) }}
    ) as tickets
    where n <= 3
    group by contact_id

),

survey_rows as (

    select
        contact_id,
        trigger_id as enrollment_id,
        trigger,
        triggered_at,
        null::text as survey_id,
        null::integer as score,
        null::text as comment,
        null::text as nps_category,
        null::timestamptz as answered_at
    from triggers

),

answer_rows as (

    select
        contact_id,
        'survey_response:' || survey_id as enrollment_id,
        trigger,
        null::timestamptz as triggered_at,
        survey_id,
        score,
        comment,
        nps_category,
        answered_at
    from responses

),

audience_rows as (

    select * from survey_rows
    union all
    select * from answer_rows

),

recent_messages as (

    -- Only the audience's contacts: ranking every contact's sent messages was most of this
    -- model's time (4M ledger rows for 100k audience rows at a million contacts).
    select
        contact_id,
        string_agg(program || ' / ' || step || ' (' || to_char(sent_at, 'YYYY-MM-DD') || ')',
                   '; ' order by sent_at desc, ledger_id) as recent_messages
    from (
        select
            *,
            -- ties broken by id: the same rows in the same order on every build
            row_number() over (partition by contact_id order by sent_at desc, ledger_id) as n
        from {{ ref('stg_nurture__message_ledger') }}
        where state = 'sent'
            and contact_id in (select contact_id from audience_rows)
    ) as sent
    where n <= 5
    group by contact_id

),

final as (

    select
        rows.contact_id,
        rows.enrollment_id,
        rows.trigger,
        rows.triggered_at,
        rows.survey_id,
        rows.score,
        rows.comment,
        rows.nps_category,
        rows.answered_at,
        case when rows.nps_category = 'detractor' then rows.answered_at end as detractor_at,
        contacts.email,
        contacts.phone,
        contacts.first_name,
        contacts.last_name,
        contacts.time_zone,
        contacts.locale,
        contacts.lifecycle_stage,
        contacts.has_email_consent,
        contacts.has_sms_consent,
        contacts.has_sms_consent and not contacts.has_email_consent as prefers_sms,
        coalesce(contacts.owner_email, '{{ var("default_account_owner_email") }}')
            as owner_email,
        coalesce(contacts.owner_name, 'Customer success') as owner_name,
        recent_messages.recent_messages,
        recent_tickets.recent_tickets,
        contacts.source_loaded_at
    from audience_rows as rows
    inner join contacts using (contact_id)
    left join recent_messages using (contact_id)
    left join recent_tickets using (contact_id)

)

select * from final
{% endmacro %}

{#- The contacts whose survey rows may have changed since `mark`: what contacts reads, a
    milestone (enrollment, ticket, attendance, a webinar's new time), an answer, a message
    sent to a contact in the audience (its recent messages), and a milestone that has
    fallen out of the 30 days since. -#}
{% macro survey_audience_inputs_loaded_since(mark) %}
    {{ contact_inputs_loaded_since(mark) }}
    union all
    -- an enrollment comes from a sign-up or a CRM row (contact_inputs_loaded_since)
    {{ contacts_loaded_since(['stg_app__signups', 'stg_support__tickets',
                              'stg_app__webinar_attendance'], mark) }}
    union all
    select attendance.contact_id
    from {{ ref('stg_app__webinar_attendance') }} as attendance
    inner join {{ ref('stg_app__webinars') }} as webinars using (webinar_id)
    where webinars.loaded_at > {{ mark }}
    union all
    select contact_id from {{ ref('stg_nurture__survey_responses') }}
    where answered_at > {{ mark }}
    union all
    select contact_id from {{ ref('stg_nurture__message_ledger') }}
    where state = 'sent' and updated_at > {{ mark }}
        and contact_id in (select contact_id from {{ this }})
    union all
    select contact_id from {{ this }} where triggered_at <= now() - interval '30 days'
    union all
    -- the contact that had a ticket loaded since: a ticket moved to another contact
    select contact_id from {{ this }}
    where enrollment_id in (
        select 'survey:ticket_closed:' || ticket_id from {{ ref('stg_support__tickets') }}
        where loaded_at > {{ mark }}
    )
{% endmacro %}

{% macro survey_audience_source_marks() %}
    {%- set marks = contact_source_marks() %}
    {%- do marks.update(source_deletion_marks([
            source('app', 'signups'), source('support', 'support_tickets'),
            source('app', 'webinar_attendance'), source('app', 'webinars'),
            source('receiver', 'survey_responses')])) %}
    {{- return(marks) }}
{% endmacro %}
