"""Policies every program obeys, applied by the planner: the holdout group and the
frequency cap. Both concern marketing messages to the contact only: transactional steps
(a confirmation, a reminder asked for) and internal alerts are exempt.

Holdout: a stable share of each program's audience gets none of its marketing messages,
so conversion can be compared with the treated group. Membership is a hash of program and
contact — the same on every run, with no state to keep — and is recorded in the ledger
(`held_out`) for every message the contact would have been sent.

Frequency cap: at most `limit` marketing messages per contact in a rolling window, across
all programs. When the cap has room for one more, priority decides who gets it: a program
leaves room for the marketing messages higher-priority programs will send the contact
within `LOOKAHEAD` (what they planned as waiting, in `nurture.upcoming_messages`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

WINDOW = timedelta(days=7)
LOOKAHEAD = timedelta(days=1)
DEFAULT_FREQUENCY_CAP = 3  # Airflow variable nurture_frequency_cap overrides it

DDL = """
create table if not exists nurture.upcoming_messages (
    program text not null,
    priority integer not null,
    step text not null,
    contact_id text not null,
    enrollment_id text not null,
    due_at timestamptz not null,
    recorded_at timestamptz not null default now(),
    primary key (program, step, contact_id, enrollment_id)
);
create index if not exists upcoming_messages_contact
    on nurture.upcoming_messages (contact_id, due_at);
alter table nurture.message_ledger
    add column if not exists is_marketing boolean not null default true;
create index if not exists message_ledger_marketing_recent
    on nurture.message_ledger (contact_id, coalesce(sent_at, planned_at)) where is_marketing;
"""


def in_holdout(program: str, contact_id: str, share: float) -> bool:
    """Whether the contact is in the program's holdout group; stable across runs."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{program}\0{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass
class FrequencyCap:
    """Room left per contact: `used` counts marketing messages in the window (every
    program, this plan's included as it goes), `reserved` those higher-priority programs
    have coming within a day."""

    limit: int
    used: Counter = field(default_factory=Counter)
    reserved: Counter = field(default_factory=Counter)

    def allows(self, contact_id: str) -> bool:
        return self.used[contact_id] + self.reserved[contact_id] < self.limit

    def take(self, contact_id: str) -> None:
        self.used[contact_id] += 1


def load_cap(conn, program, *, limit: int, now: datetime,
             contacts: Collection[str] | None = None) -> FrequencyCap:
    """The cap's bookkeeping for every contact, or for `contacts` (a chunk of the plan's)."""
    from nurture.ledger import text_array

    listed = None if contacts is None else text_array(contacts)
    with conn.cursor() as cur:
        cur.execute(
            "select contact_id, count(*) from nurture.message_ledger where is_marketing"
            " and state in ('planned', 'sending', 'sent', 'unknown')"
            " and coalesce(sent_at, planned_at) > %s"
            " and (%s::text[] is null or contact_id = any(%s::text[])) group by contact_id",
            (now - WINDOW, listed, listed),
        )
        used = Counter(dict(cur.fetchall()))
        cur.execute(
            "select contact_id, count(*) from nurture.upcoming_messages"
            " where priority > %s and program <> %s and due_at <= %s"
            " and (%s::text[] is null or contact_id = any(%s::text[])) group by contact_id",
            (program.priority, program.name, now + LOOKAHEAD, listed, listed),
        )
        reserved = Counter(dict(cur.fetchall()))
    return FrequencyCap(limit=limit, used=used, reserved=reserved)


def record_upcoming(conn, program, upcoming: Iterable[tuple[str, str, str, datetime]], *,
                    replace: bool = True) -> None:
    """Replace the program's upcoming marketing messages: (step, contact, enrollment, due).
    `replace=False` adds to them (the plan clears them once, then adds a chunk at a time)."""
    from psycopg2.extras import execute_values

    with conn.cursor() as cur:
        if replace:
            cur.execute("delete from nurture.upcoming_messages where program = %s",
                        (program.name,))
        execute_values(
            cur, "insert into nurture.upcoming_messages (program, priority, step, contact_id,"
            " enrollment_id, due_at) values %s on conflict do nothing",
            [(program.name, program.priority, *row) for row in upcoming], page_size=1000)
