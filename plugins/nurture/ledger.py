"""The ledger: one row per (program, step, contact, enrollment), the single record of what
was decided and sent.

Its unique key is what makes retries, re-runs and backfills safe: a decision is written
once, and a row is dispatched only by the run whose batch it is in (a later run may adopt
a row an earlier one never sent). A row is marked `sending` (committed) before its request
leaves, so a worker that dies mid-batch leaves evidence: those rows become `unknown`,
never a second send.

States: `planned` → `sending` → `sent` | `failed` | `unknown`; `skipped` with a reason;
`deferred`: held back by the frequency cap and decided again on each run (it becomes
planned when there is room, or skipped when it no longer may go out).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from psycopg2.extras import execute_values

SCHEMA_DDL = """
create schema if not exists nurture;

create table if not exists nurture.message_ledger (
    ledger_id uuid primary key default gen_random_uuid(),
    program text not null,
    step text not null,
    contact_id text not null,
    enrollment_id text not null,
    channel text not null check (channel in ('email', 'sms')),
    state text not null
        check (state in ('planned', 'sending', 'sent', 'failed', 'unknown', 'skipped',
                         'deferred')),
    reason text,
    recipient text,
    locale text,
    template_version text,
    provider_message_id text,
    dag_run_id text,
    batch_no integer,
    due_at timestamptz not null,
    planned_at timestamptz not null default now(),
    sent_at timestamptz,
    updated_at timestamptz not null default now(),
    unique (program, step, contact_id, enrollment_id)
);

-- Ledgers created before `deferred` existed get the wider check.
do $$
begin
    if not exists (select from pg_constraint
                    where conname = 'message_ledger_state_check'
                      and pg_get_constraintdef(oid) like '%deferred%') then
        alter table nurture.message_ledger drop constraint if exists message_ledger_state_check;
        alter table nurture.message_ledger add constraint message_ledger_state_check
            check (state in ('planned', 'sending', 'sent', 'failed', 'unknown', 'skipped',
                             'deferred'));
    end if;
end $$;

create index if not exists message_ledger_program_run_batch
    on nurture.message_ledger (program, dag_run_id, channel, batch_no);
-- The send-time consent check reads consent events through the ledger by contact.
create index if not exists message_ledger_contact on nurture.message_ledger (contact_id);
-- The plan looks up what is decided a chunk of contacts at a time, and what earlier runs
-- left unfinished (few rows, however long the ledger).
create index if not exists message_ledger_program_contact
    on nurture.message_ledger (program, contact_id);
create index if not exists message_ledger_unfinished
    on nurture.message_ledger (program) where state in ('planned', 'sending', 'deferred');
-- dbt's message_sends reads the rows changed since its last build.
create index if not exists message_ledger_updated_at on nurture.message_ledger (updated_at);
-- and matches Twilio's status callbacks to their messages by SID.
create index if not exists message_ledger_sms_sid on nurture.message_ledger (provider_message_id)
    where channel = 'sms';

-- Each enrollment's step states, kept by the ledger's triggers in the writer's own
-- transaction: a plan reads one row an enrollment, not the program's whole ledger (a
-- year's sends: millions of rows). Changes are merged into the row (`||`, `-`), so two
-- writers of one enrollment's steps each keep theirs. The ledger's key is never updated.
do $$
begin
    if to_regclass('nurture.enrollment_states') is null then
        -- No ledger write between the fill and the triggers' creation goes unseen.
        lock table nurture.message_ledger in share row exclusive mode;
        create table nurture.enrollment_states (
            program text not null,
            contact_id text not null,
            enrollment_id text not null,
            states jsonb not null,  -- step -> state
            primary key (program, contact_id, enrollment_id)
        );
        insert into nurture.enrollment_states
        select program, contact_id, enrollment_id, jsonb_object_agg(step, state)
          from nurture.message_ledger group by program, contact_id, enrollment_id;
    end if;
end $$;
-- A plan whose audience shares a few enrollments (the webinars open now) reads theirs
-- only, not every past one's (nurture.settled).
create index if not exists enrollment_states_by_enrollment
    on nurture.enrollment_states (program, enrollment_id);

create or replace function nurture.enrollment_states_written() returns trigger
language plpgsql as $$
begin
    insert into nurture.enrollment_states as kept (program, contact_id, enrollment_id, states)
    select program, contact_id, enrollment_id, jsonb_object_agg(step, state)
      from written group by program, contact_id, enrollment_id
     order by program, contact_id, enrollment_id  -- rows locked in one order: no deadlock
    on conflict (program, contact_id, enrollment_id)
    do update set states = kept.states || excluded.states;
    return null;
end $$;

create or replace function nurture.enrollment_states_deleted() returns trigger
language plpgsql as $$
begin
    if tg_op = 'TRUNCATE' then
        truncate nurture.enrollment_states;
        return null;
    end if;
    update nurture.enrollment_states as kept set states = kept.states - gone.steps
      from (select program, contact_id, enrollment_id, array_agg(step) as steps
              from deleted group by program, contact_id, enrollment_id) as gone
     where (kept.program, kept.contact_id, kept.enrollment_id)
           = (gone.program, gone.contact_id, gone.enrollment_id);
    delete from nurture.enrollment_states as kept using deleted
     where (kept.program, kept.contact_id, kept.enrollment_id)
           = (deleted.program, deleted.contact_id, deleted.enrollment_id)
       and kept.states = '{}';
    return null;
end $$;

create or replace trigger enrollment_states_inserted after insert on nurture.message_ledger
    referencing new table as written
    for each statement execute function nurture.enrollment_states_written();
create or replace trigger enrollment_states_updated after update on nurture.message_ledger
    referencing new table as written
    for each statement execute function nurture.enrollment_states_written();
create or replace trigger enrollment_states_deleted after delete on nurture.message_ledger
    referencing old table as deleted
    for each statement execute function nurture.enrollment_states_deleted();
create or replace trigger enrollment_states_truncated after truncate on nurture.message_ledger
    for each statement execute function nurture.enrollment_states_deleted();

create table if not exists nurture.guard_results (
    program text not null,
    dag_run_id text not null,
    checked_at timestamptz not null default now(),
    success boolean not null,
    row_count integer,
    failures jsonb not null,
    result jsonb not null,
    primary key (program, dag_run_id, checked_at)
);

create table if not exists nurture.run_summaries (
    program text not null,
    dag_run_id text not null,
    finished_at timestamptz not null default now(),
    summary jsonb not null,
    primary key (program, dag_run_id)
);
"""

class Entry(NamedTuple):
    """A decision to record: `planned` (to dispatch) or `skipped` with a reason. (A named
    tuple: a plan of a million contacts makes millions of these.)"""

    program: str
    step: str
    contact_id: str
    enrollment_id: str
    channel: str
    state: str
    due_at: datetime
    reason: str | None = None
    recipient: str | None = None
    locale: str | None = None
    batch_no: int | None = None
    is_marketing: bool = True  # counted by the frequency cap (nurture.policies)


@dataclass(frozen=True)
class Outcome:
    """What happened to one dispatched row."""

    ledger_id: str
    state: str
    reason: str | None = None
    provider_message_id: str | None = None
    template_version: str | None = None


def reason_category(reason: str | None) -> str:
    """`template_error: welcome/en/subject.txt: 'first_name' is undefined` -> `template_error`."""
    return (reason or "unknown").split(":", 1)[0]


def ensure_schema(conn) -> None:
    """Nurture's own tables (the ledger, webinar seats...), and the raw tables the webhook
    receiver fills (dbt reads them as sources, so they must exist before the first event
    arrives)."""
    from nurture.links import DDL as SHORT_LINKS_DDL
    from nurture.policies import DDL as POLICIES_DDL
    from nurture.send_rate import DDL as SEND_RATE_DDL
    from nurture.test_sends import DDL as TEST_SENDS_DDL
    from nurture.webhooks.storage import DDL as RAW_EVENTS_DDL
    from nurture.webinars import DDL as WEBINAR_SEATS_DDL

    with conn.cursor() as cur:
        cur.execute(SCHEMA_DDL)
        cur.execute(POLICIES_DDL)
        cur.execute(SEND_RATE_DDL)
        cur.execute(WEBINAR_SEATS_DDL)
        cur.execute(SHORT_LINKS_DDL)
        cur.execute(RAW_EVENTS_DDL)
        cur.execute(TEST_SENDS_DDL)


def existing_states(conn, program: str, contacts: Collection[str] | None = None
                    ) -> dict[tuple[str, str, str], str]:
    """(step, contact_id, enrollment_id) -> state, for everything already decided (for
    `contacts` only, when given: the plan asks a chunk of the audience at a time)."""
    with conn.cursor() as cur:
        cur.execute(  # from each enrollment's one row of states, kept with the ledger
            "select step.key, contact_id, enrollment_id, step.value"
            " from nurture.enrollment_states cross join jsonb_each_text(states) as step"
            " where program = %s and (%s::text[] is null or contact_id = any(%s::text[]))",
            (program, _listed(contacts), _listed(contacts)),
        )
        return {(step, contact, enrollment): state for step, contact, enrollment, state in cur}


def messaged_since(conn, program, since: datetime, contacts: Collection[str] | None = None
                   ) -> frozenset[str]:
    """Contacts one of `program`'s contact-facing steps went to (or may have: planned,
    sending, unknown) since `since` — for its once_per rule; among `contacts` if given."""
    steps = [step.name for step in program.steps if not step.is_internal]
    with conn.cursor() as cur:
        cur.execute(
            "select distinct contact_id from nurture.message_ledger where program = %s"
            " and step = any(%s) and state in ('planned', 'sending', 'sent', 'unknown')"
            " and coalesce(sent_at, planned_at) >= %s"
            " and (%s::text[] is null or contact_id = any(%s::text[]))",
            (program.name, steps, since, _listed(contacts), _listed(contacts)),
        )
        return frozenset(contact for (contact,) in cur)


def _listed(contacts: Collection[str] | None) -> str | None:
    return None if contacts is None else text_array(contacts)


def text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal (`'{"a","b"}'`, bound as one value, cast with
    `::text[]`): thousands of ids parse in a few milliseconds, where psycopg2's
    `ARRAY['a', 'b', ...]` takes tens."""
    values = list(values)
    joined = '","'.join(values)
    if '"' in joined or "\\" in joined:  # rare: escape each value
        joined = '","'.join(value.replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return '{"' + joined + '"}' if values else "{}"


def record(conn, entries: Sequence[Entry], *, dag_run_id: str) -> int:
    """Write decisions in one statement: new rows, and a new decision on a `deferred` row;
    any other row already written (by another run) is left alone.

    Returns how many rows this call wrote.
    """
    if not entries:
        return 0
    with conn.cursor() as cur:
        inserted = execute_values(
            cur,
            """
            insert into nurture.message_ledger (program, step, contact_id, enrollment_id,
                channel, state, reason, recipient, locale, due_at, batch_no, dag_run_id,
                is_marketing)
            values %s
            on conflict (program, step, contact_id, enrollment_id) do update
               set state = excluded.state, reason = excluded.reason,
                   recipient = excluded.recipient, locale = excluded.locale,
                   batch_no = excluded.batch_no, dag_run_id = excluded.dag_run_id,
                   due_at = excluded.due_at, planned_at = now(), updated_at = now()
             where message_ledger.state = 'deferred'
            returning 1
            """,
            [
                (e.program, e.step, e.contact_id, e.enrollment_id, e.channel, e.state, e.reason,
                 e.recipient, e.locale, e.due_at, e.batch_no, dag_run_id, e.is_marketing)
                for e in entries
            ],
            page_size=1000,
            fetch=True,
        )
    return len(inserted)


def claim_batch(conn, *, program: str, dag_run_id: str, channel: str, batch_no: int,
                limit: int | None = None, new_attempt: bool = True) -> list[dict]:
    """Mark up to `limit` of a batch's planned rows `sending` and return them; commits
    before any send. Claiming a little at a time bounds what a killed worker leaves behind.

    On an attempt's first claim (`new_attempt`), rows a previous, interrupted attempt left
    in `sending` may have gone out: they become `unknown` instead of being sent again. Later
    claims of the same attempt leave `sending` rows alone: they are its own, still in flight.
    Run ids are unique per DAG only (two programs' scheduled runs share one), hence the
    program in the key.
    """
    key = (program, dag_run_id, channel, batch_no)
    with conn.cursor() as cur:
        if new_attempt:
            # Locked in ledger_id order, as settle locks: the attempt still sending these
            # rows may be settling them, and two orders would deadlock.
            cur.execute(
                """
                with stale as materialized (
                    select ledger_id from nurture.message_ledger
                     where program = %s and dag_run_id = %s and channel = %s and batch_no = %s
                       and state = 'sending'
                     order by ledger_id
                       for update
                )
                update nurture.message_ledger as ledger
                   set state = 'unknown', reason = 'interrupted_during_send', updated_at = now()
                  from stale
                 where ledger.ledger_id = stale.ledger_id
                """,
                key,
            )
        # The rows are chosen once, in a materialized CTE: as an `in (subquery)` the planner
        # may run the subquery again per row, and with `skip locked` claim past the limit.
        cur.execute(
            """
            with chosen as materialized (
                select ledger_id from nurture.message_ledger
                 where program = %s and dag_run_id = %s and channel = %s and batch_no = %s
                   and state = 'planned'
                 order by ledger_id
                 limit %s
                   for update skip locked
            )
            update nurture.message_ledger as ledger
               set state = 'sending', updated_at = now()
              from chosen
             where ledger.ledger_id = chosen.ledger_id
            returning ledger.ledger_id::text, ledger.program, ledger.step, ledger.contact_id,
                      ledger.enrollment_id, ledger.channel, ledger.recipient, ledger.locale
            """,
            (*key, limit),
        )
        columns = [c.name for c in cur.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    conn.commit()
    return rows


def stranded(conn, *, program: str, stale_after: timedelta = timedelta(hours=1)) -> list[dict]:
    """Rows left unfinished before this plan: `planned` (never claimed, so safe to send),
    `deferred` (capped), and `sending` claimed longer than `stale_after` ago (claimed, never
    settled: they may have gone out). Recent `sending` rows may belong to a worker still
    running: left alone."""
    with conn.cursor() as cur:
        cur.execute(
            """
            select ledger_id::text, step, contact_id, enrollment_id, channel, state, due_at
              from nurture.message_ledger
             where program = %s
               and (state in ('planned', 'deferred')
                    or (state = 'sending' and updated_at < now() - %s))
             order by due_at
            """,
            (program, stale_after),
        )
        columns = [c.name for c in cur.description]
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def lock_program(conn, program: str) -> None:
    """Serialise planning per program until this transaction ends (two runs at once, e.g.
    `nurture run` beside the scheduler, must not adopt each other's rows)."""
    with conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"nurture:{program}",))


def release(conn, ledger_ids: Sequence[str]) -> None:
    """Return claimed rows to `planned`: used when a batch fails before any request left."""
    with conn.cursor() as cur:
        cur.execute(
            "update nurture.message_ledger set state = 'planned', updated_at = now()"
            " where ledger_id = any(%s::uuid[]) and state = 'sending'",
            (list(ledger_ids),),
        )
    conn.commit()


def adopt(conn, assignments: Sequence[tuple[str, int]], *, dag_run_id: str) -> None:
    """Move never-claimed rows of earlier runs into this run's batches: (ledger_id, batch)."""
    if not assignments:
        return
    with conn.cursor() as cur:
        execute_values(
            cur,
            """
            update nurture.message_ledger as ledger
               set dag_run_id = moved.dag_run_id, batch_no = moved.batch_no, updated_at = now()
              from (values %s) as moved (ledger_id, batch_no, dag_run_id)
             where ledger.ledger_id = moved.ledger_id::uuid and ledger.state = 'planned'
            """,
            [(ledger_id, batch_no, dag_run_id) for ledger_id, batch_no in assignments],
            page_size=1000,
        )


def close(conn, closures: Sequence[tuple[str, str, str]]) -> None:
    """Finish earlier runs' rows without sending: (ledger_id, state, reason)."""
    if not closures:
        return
    with conn.cursor() as cur:
        execute_values(
            cur,
            """
            update nurture.message_ledger as ledger
               set state = closed.state, reason = closed.reason, updated_at = now()
              from (values %s) as closed (ledger_id, state, reason)
             where ledger.ledger_id = closed.ledger_id::uuid
               and ledger.state in ('planned', 'sending', 'deferred')
            """,
            closures,
            page_size=1000,
        )


def settle(conn, outcomes: Iterable[Outcome]) -> None:
    """Write the outcomes of a dispatched batch in one statement. Rows are locked in
    ledger_id order, as a new attempt's claim locks the rows it finds still sending: in two
    orders, an attempt settling while a retry starts would deadlock."""
    rows = sorted(
        ((o.ledger_id, o.state, o.reason, o.provider_message_id, o.template_version)
         for o in outcomes),
        key=lambda row: row[0],
    )
    if not rows:
        return
    with conn.cursor() as cur:
        execute_values(
            cur,
            """
            update nurture.message_ledger as ledger
               set state = outcome.state,
                   reason = outcome.reason,
                   provider_message_id = outcome.provider_message_id,
                   template_version = outcome.template_version,
                   sent_at = case when outcome.state = 'sent' then now() end,
                   updated_at = now()
              from (
                  select locked.ledger_id, written.state, written.reason,
                         written.provider_message_id, written.template_version
                    from nurture.message_ledger as locked
                    join (values %s) as written (ledger_id, state, reason, provider_message_id,
                                                 template_version)
                      on locked.ledger_id = written.ledger_id::uuid
                   order by locked.ledger_id
                     for update of locked
              ) as outcome
             where ledger.ledger_id = outcome.ledger_id
               -- or marked interrupted by a retry while this attempt still held the row:
               -- only the attempt that claimed it knows its id, and what it learnt stands
               and (ledger.state = 'sending'
                    or (ledger.state = 'unknown' and ledger.reason = 'interrupted_during_send'))
            """,
            rows,
            page_size=1000,
        )
    conn.commit()


def run_counts(conn, *, program: str, dag_run_id: str) -> list[tuple[str, str, str, int]]:
    """(step, state, reason, count) for the rows one run wrote."""
    with conn.cursor() as cur:
        cur.execute(
            """
            select step, state, coalesce(reason, ''), count(*)
              from nurture.message_ledger
             where program = %s and dag_run_id = %s
             group by 1, 2, 3
            """,
            (program, dag_run_id),
        )
        return cur.fetchall()
