"""Raw, idempotent storage of what the providers post, before anything interprets it.

Each payload is kept whole as jsonb so a parsing bug downstream (dbt staging models) loses
nothing: the models can be fixed and rebuilt from these tables. Providers redeliver on any
doubt, so every insert is keyed on the provider's own identity and ignores conflicts; a
request is one statement, so a batch is stored entirely or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from nurture.warehouse import connect

# What providers and recipients post about messages (survey answers are kept apart).
PROVIDER_EVENT_TABLES = ("raw.sendgrid_events", "raw.twilio_status_callbacks",
                         "raw.twilio_inbound_messages", "raw.unsubscribe_requests")

DDL = """
create schema if not exists raw;
create table if not exists raw.sendgrid_events (
    sg_event_id text primary key,
    event text,
    received_at timestamptz not null default now(),
    payload jsonb not null
);
-- SendGrid events by the ledger id they carry, as stg_sendgrid__events reads it: the
-- dispatcher's send-time consent read joins a chunk's ledger rows to their events by it.
create index if not exists sendgrid_events_ledger_id on raw.sendgrid_events ((case
    when payload ->> 'ledger_id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
        then (payload ->> 'ledger_id')::uuid
end));
create table if not exists raw.twilio_status_callbacks (
    message_sid text not null,
    message_status text not null,
    received_at timestamptz not null default now(),
    payload jsonb not null,
    primary key (message_sid, message_status)
);
create table if not exists raw.twilio_inbound_messages (
    message_sid text primary key,
    received_at timestamptz not null default now(),
    payload jsonb not null
);
create table if not exists raw.unsubscribe_requests (
    token_digest text primary key,
    contact_id text not null,
    channel text not null,
    source text not null,
    received_at timestamptz not null default now(),
    payload jsonb not null
);
create table if not exists raw.survey_responses (
    survey_id text primary key,
    contact_id text not null,
    channel text not null,
    trigger text not null,
    score int not null check (score between 0 and 10),
    comment text,
    issued_at timestamptz not null,
    first_answered_at timestamptz not null default now(),
    answered_at timestamptz not null default now(),
    answer_count int not null default 1
);
"""

# The events travel as one jsonb array and are split by the server: one statement however
# large the batch, and duplicates inside the batch are ignored just like redeliveries.
_INSERT_SENDGRID = """
insert into raw.sendgrid_events (sg_event_id, event, payload)
select e ->> 'sg_event_id', e ->> 'event', e
from jsonb_array_elements(%s::jsonb) as e
on conflict do nothing
"""

_INSERT_STATUS = """
insert into raw.twilio_status_callbacks (message_sid, message_status, payload)
values (%s, %s, %s::jsonb)
on conflict do nothing
"""

_INSERT_INBOUND = """
insert into raw.twilio_inbound_messages (message_sid, payload)
values (%s, %s::jsonb)
on conflict do nothing
"""


def create_tables(warehouse_url: str) -> None:
    """Create the raw tables if they are missing (safe to repeat)."""
    with connect(warehouse_url) as conn, conn.cursor() as cur:
        cur.execute(DDL)


def store_sendgrid_events(warehouse_url: str, events: Sequence[Mapping[str, Any]]) -> int:
    """Store SendGrid events keyed on `sg_event_id`; return how many were new."""
    if not events:
        return 0
    return _execute(warehouse_url, _INSERT_SENDGRID, (json.dumps(list(events)),))


def store_twilio_status(warehouse_url: str, form: Mapping[str, Any]) -> int:
    """Store a status callback keyed on MessageSid + MessageStatus; 1 if new, else 0.

    A message moves through several statuses (queued, sent, delivered), each its own row;
    the same status posted twice is one row.
    """
    return _execute(
        warehouse_url,
        _INSERT_STATUS,
        (form["MessageSid"], form["MessageStatus"], json.dumps(dict(form))),
    )


def store_twilio_inbound(warehouse_url: str, form: Mapping[str, Any]) -> int:
    """Store an inbound message keyed on MessageSid; 1 if new, else 0."""
    return _execute(warehouse_url, _INSERT_INBOUND, (form["MessageSid"], json.dumps(dict(form))))


def store_unsubscribe(warehouse_url: str, request: Mapping[str, Any]) -> int:
    """Store an unsubscribe keyed on the token's digest: a link clicked twice (or a mail
    client's one-click POST and the person's page visit) is one row."""
    return _execute(
        warehouse_url,
        """
        insert into raw.unsubscribe_requests (token_digest, contact_id, channel, source, payload)
        values (%s, %s, %s, %s, %s::jsonb)
        on conflict do nothing
        """,
        (request["token_digest"], request["contact_id"], request["channel"], request["source"],
         json.dumps(dict(request))),
    )


def store_survey_response(warehouse_url: str, response: Mapping[str, Any]) -> int:
    """Store a survey answer keyed on `survey_id`; 1 whether it is the first or a new one.

    Unlike the providers' events, a person may change their mind: a later answer replaces
    the score and comment, keeps when they first answered and counts how often they did.
    """
    return _execute(
        warehouse_url,
        """
        insert into raw.survey_responses
            (survey_id, contact_id, channel, trigger, score, comment, issued_at)
        values (%s, %s, %s, %s, %s, %s, %s)
        on conflict (survey_id) do update set
            score = excluded.score,
            comment = excluded.comment,
            answered_at = excluded.answered_at,
            answer_count = raw.survey_responses.answer_count + 1
        """,
        (response["survey_id"], response["contact_id"], response["channel"],
         response["trigger"], response["score"], response["comment"], response["issued_at"]),
    )


def _execute(warehouse_url: str, statement: str, params: tuple[Any, ...]) -> int:
    with connect(warehouse_url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.rowcount
