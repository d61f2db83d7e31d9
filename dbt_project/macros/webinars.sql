{#- The webinar program's windows (dags/webinar.py), as days before a webinar's start: the
    invitation goes out 14 days before and is open for 2 days, the last call 3 days before
    and open for a day, each from a day ahead (nurture.policies.LOOKAHEAD). -#}
{% macro webinar_windows() %}
    {{- return({'inviting': (12, 15), 'calling_last': (2, 4)}) }}
{% endmacro %}

{#- Whether a webinar (`starts_at`) is in `window` now. -#}
{% macro webinar_in_window(window) -%}
    {%- set first, last = webinar_windows()[window] -%}
    starts_at between now() + interval '{{ first }} days' and now() + interval '{{ last }} days'
{%- endmacro %}

{#- The webinar invitations sent (one ledger row at most per contact and webinar: its
    unique key), of the `changed` contacts. -#}
{% macro webinar_invitations_sent(changed=none) %}
    select contact_id, enrollment_id
    from {{ ref('stg_nurture__message_ledger') }}
    where program = 'webinar' and step = 'invitation' and state = 'sent'
        {{ and_contact_in(changed) }}
{% endmacro %}

{#- The contacts whose invitations may have changed since `mark`: a CRM row (the stage a
    webinar targets) or an invitation sent since; every contact when a webinar was loaded
    or one of its windows opened or closed since (even both: an edge, not the state, is
    compared). -#}
{% macro webinar_invitee_inputs_loaded_since(mark) %}
    {{ contacts_loaded_since(['stg_crm__contacts'], mark) }}
    union all
    select contact_id from {{ ref('stg_nurture__message_ledger') }}
    where program = 'webinar' and step = 'invitation' and updated_at > {{ mark }}
    union all
    select contact_id from {{ ref('contacts') }}
    where exists (
        select from {{ ref('stg_app__webinars') }}
        where loaded_at > {{ mark }}
        {%- for edges in webinar_windows().values() %}{% for days in edges %}
            or starts_at - interval '{{ days }} days' between {{ mark }} and now()
        {%- endfor %}{% endfor %}
    )
{% endmacro %}

{% macro webinar_invitee_sources() %}
    {{- return([source('crm', 'crm_contacts'), source('app', 'webinars'),
                source('nurture', 'message_ledger')]) }}
{% endmacro %}

{#- The contacts whose audience rows may have changed since `mark`: the invitees', what
    contacts reads, a registration loaded since, or one that left the 60 days since. -#}
{% macro webinar_member_inputs_loaded_since(mark) %}
    {{ webinar_invitee_inputs_loaded_since(mark) }}
    union all
    {{ contact_inputs_loaded_since(mark) }}
    union all
    select contact_id from {{ ref('stg_app__webinar_registrations') }}
    where loaded_at > {{ mark }}
        or registered_at between {{ mark }} - interval '60 days' and now() - interval '60 days'
{% endmacro %}

{% macro webinar_member_source_marks() %}
    {%- set marks = contact_source_marks() %}
    {%- do marks.update(source_deletion_marks(webinar_invitee_sources()
            + [source('app', 'webinar_registrations')])) %}
    {{- return(marks) }}
{% endmacro %}

{#- int_webinar_invitees' rows: every contact's, or those of the `changed` contacts
    (changed_contacts). -#}
{% macro webinar_invitee_rows(changed=none) %}
with

webinars as (

    select
        *,
        {{ webinar_in_window('inviting') }} as is_inviting,
        {{ webinar_in_window('calling_last') }} as is_calling_last
    from {{ ref('stg_app__webinars') }}

),

contacts as (

    select * from {{ ref('contacts') }}
    {{ where_contact_in(changed) }}

),

invited as (

    {{ webinar_invitations_sent(changed) }}

),

targeted as (

    select
        webinars.webinar_id,
        webinars.is_inviting,
        contacts.contact_id
    from webinars
    inner join contacts
        on contacts.lifecycle_stage = webinars.audience_stage
        or webinars.audience_stage = 'all'
    where webinars.is_inviting or webinars.is_calling_last

),

final as (

    select
        targeted.webinar_id,
        targeted.contact_id
    from targeted
    where targeted.is_inviting
        or exists (
            select from invited
            where invited.contact_id = targeted.contact_id
                and invited.enrollment_id = 'webinar:' || targeted.webinar_id
        )

)

select * from final
{% endmacro %}

{#- int_webinar_audience_members' rows: every contact's, or those of the `changed`
    contacts (changed_contacts). -#}
{% macro webinar_member_rows(changed=none) %}
with

webinars as (

    select * from {{ ref('stg_app__webinars') }}

),

invitees as not materialized (

    select * from {{ ref('int_webinar_invitees') }}
    {{ where_contact_in(changed) }}

),

registrants as (

    select * from {{ ref('int_webinar_registrants') }}
    where registered_at > now() - interval '60 days' {{ and_contact_in(changed) }}

),

-- Not filtered to the changed contacts: read through its index for the few a build redoes.
contacts as (

    select * from {{ ref('contacts') }}

),

invited as (

    -- Whether the invitation went out.
    {{ webinar_invitations_sent(changed) }}

),

zones as (

    select name as time_zone from pg_timezone_names

),

keys as (

    -- Invited, or registered and not among the invitees.
    select webinar_id, contact_id, true as is_invitee
    from invitees
    union all
    select webinar_id, contact_id, false as is_invitee
    from registrants
    where not exists (
        select from invitees
        where invitees.webinar_id = registrants.webinar_id
            and invitees.contact_id = registrants.contact_id
    )

),

-- The contacts and the invitation looked up before the webinars are joined, behind a
-- fence: PostgreSQL guesses the join with the 20 webinars keeps a tenth of the keys, and
-- for that few it would look each contact and invitation up by index (3x slower).
addressed as materialized (

    select
        keys.webinar_id,
        keys.contact_id,
        keys.is_invitee,
        contacts.email,
        contacts.phone,
        contacts.first_name,
        contacts.time_zone,
        contacts.locale,
        contacts.has_email_consent,
        contacts.has_sms_consent,
        contacts.source_loaded_at as contact_loaded_at,
        invited.contact_id is not null as was_invited
    from keys
    inner join contacts using (contact_id)
    left join invited
        on invited.contact_id = keys.contact_id
        and invited.enrollment_id = 'webinar:' || keys.webinar_id

),

members as (

    select
        addressed.*,
        webinars.webinar_title,
        webinars.starts_at,
        webinars.ends_at,
        webinars.webinar_time_zone,
        webinars.join_url,
        webinars.recording_url,
        webinars.loaded_at as webinar_loaded_at,
        -- The zone the start is shown in: the contact's, or the webinar's for an unknown one.
        coalesce(zones.time_zone, webinars.webinar_time_zone) as local_time_zone
    from addressed
    inner join webinars using (webinar_id)
    left join zones on zones.time_zone = addressed.time_zone

),

final as (

    select
        members.contact_id,
        'webinar:' || members.webinar_id as enrollment_id,
        members.webinar_id,
        members.webinar_title,
        members.starts_at,
        members.ends_at,
        members.webinar_time_zone,
        -- When it starts on the contact's clock (the webinar's own for an unknown zone).
        to_char(members.starts_at at time zone members.local_time_zone,
                'FMDay DD Mon YYYY, HH24:MI') || ' (' || members.local_time_zone || ')'
            as starts_at_local,
        -- The same as a wall-clock timestamp and its zone, for templates to word per locale.
        members.starts_at at time zone members.local_time_zone as local_start_time,
        members.local_time_zone,
        members.join_url,
        members.recording_url,
        members.email,
        members.phone,
        members.first_name,
        members.time_zone,
        members.locale,
        members.has_email_consent,
        members.has_sms_consent,
        members.is_invitee,
        members.was_invited,
        greatest(members.webinar_loaded_at, members.contact_loaded_at) as source_loaded_at
    from members

)

select * from final
{% endmacro %}
