"""The ledger against the real (embedded) PostgreSQL: its unique key, the claim that marks a
batch `sending` before anything leaves, and the outcomes written back.

Rows belong to programs named `ledger_test*` (the end-to-end tests share this warehouse and
look only at `onboarding`); each test removes its own rows.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from psycopg2.extras import LoggingConnection, RealDictCursor

from nurture import ledger
from nurture.ledger import Entry, Outcome

PROGRAM = "ledger_test"
OTHER_PROGRAM = "ledger_test_other"
DUE = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)


class StatementLog(logging.Handler):
    """Collects the statements a LoggingConnection sends to the server."""

    def __init__(self) -> None:
        super().__init__()
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg  # psycopg2 logs the query as sent, as bytes
        self.statements.append(message.decode() if isinstance(message, bytes) else str(message))

    def starting_with(self, keyword: str) -> list[str]:
        return [s for s in self.statements if s.lstrip().lower().startswith(keyword)]


@pytest.fixture
def statements() -> StatementLog:
    return StatementLog()


@pytest.fixture
def conn(warehouse_url, statements):
    """A connection that logs every statement it sends; this test's rows go at the end."""
    logger = logging.getLogger(f"ledger_test.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(statements)
    conn = psycopg2.connect(warehouse_url, connection_factory=LoggingConnection)
    conn.initialize(logger)
    ledger.ensure_schema(conn)
    conn.commit()
    statements.statements.clear()
    yield conn
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("delete from nurture.message_ledger where program in %s",
                    ((PROGRAM, OTHER_PROGRAM),))
    conn.commit()
    conn.close()


@pytest.fixture
def run_id() -> str:
    return f"ledger_test__{uuid.uuid4().hex}"


def planned(contact: str, *, step: str = "welcome", channel: str = "email", batch_no: int = 0,
            program: str = PROGRAM, enrollment: str | None = None) -> Entry:
    return Entry(
        program=program, step=step, contact_id=contact,
        enrollment_id=enrollment or f"signup:{contact}", channel=channel, state="planned",
        due_at=DUE, recipient=f"{contact}@example.com" if channel == "email" else "+14155550123",
        locale="en", batch_no=batch_no,
    )


def skipped(contact: str, reason: str, *, step: str = "welcome", channel: str = "email",
            program: str = PROGRAM) -> Entry:
    return Entry(program=program, step=step, contact_id=contact,
                 enrollment_id=f"signup:{contact}", channel=channel, state="skipped",
                 due_at=DUE, reason=reason)


def rows(conn, *, program: str = PROGRAM) -> dict[tuple[str, str], dict]:
    """(step, contact_id) -> ledger row, read fresh."""
    with conn.cursor(cursor_factory=RealDictCursor) as cur:
        cur.execute("select *, ledger_id::text as ledger_id from nurture.message_ledger"
                    " where program = %s", (program,))
        found = {(row["step"], row["contact_id"]): dict(row) for row in cur}
    conn.commit()
    return found


def states(conn, *, program: str = PROGRAM) -> dict[tuple[str, str], tuple]:
    return {key: (row["state"], row["reason"]) for key, row in rows(conn, program=program).items()}


def committed_states(warehouse_url, *, program: str = PROGRAM) -> dict[tuple[str, str], str]:
    """What another session sees: only committed changes."""
    with psycopg2.connect(warehouse_url) as other, other.cursor() as cur:
        cur.execute("select step, contact_id, state from nurture.message_ledger"
                    " where program = %s", (program,))
        found = {(step, contact): state for step, contact, state in cur}
    other.close()
    return found


# -- record -----------------------------------------------------------------------------------


def test_ensure_schema_is_idempotent(conn):
    ledger.ensure_schema(conn)
    ledger.ensure_schema(conn)
    conn.commit()


def test_record_inserts_planned_and_skipped_rows_and_returns_the_count(conn, run_id):
    entries = [planned("c1"), planned("c2", batch_no=1),
               planned("c1", step="check_in", channel="sms"),
               skipped("c3", "no_consent"), skipped("c4", "goal_reached")]

    assert ledger.record(conn, entries, dag_run_id=run_id) == 5
    conn.commit()

    found = rows(conn)
    assert set(found) == {("welcome", "c1"), ("welcome", "c2"), ("check_in", "c1"),
                          ("welcome", "c3"), ("welcome", "c4")}
    first = found[("welcome", "c1")]
    assert (first["state"], first["reason"], first["channel"]) == ("planned", None, "email")
    assert (first["recipient"], first["locale"], first["batch_no"]) == (
        "c1@example.com", "en", 0)
    assert (first["enrollment_id"], first["dag_run_id"], first["due_at"]) == (
        "signup:c1", run_id, DUE)
    assert uuid.UUID(first["ledger_id"]) and first["planned_at"] is not None
    assert found[("check_in", "c1")]["recipient"] == "+14155550123"
    assert found[("welcome", "c2")]["batch_no"] == 1
    assert (found[("welcome", "c3")]["state"], found[("welcome", "c3")]["reason"]) == (
        "skipped", "no_consent")
    assert found[("welcome", "c4")]["batch_no"] is None
    assert {row["sent_at"] for row in found.values()} == {None}


def test_record_writes_a_batch_in_one_statement(conn, run_id, statements):
    entries = [planned(f"c{i:03d}", batch_no=i // 100) for i in range(500)]

    assert ledger.record(conn, entries, dag_run_id=run_id) == 500

    assert len(statements.starting_with("insert")) == 1
    assert len(rows(conn)) == 500


def test_record_nothing_is_a_no_op(conn, run_id, statements):
    assert ledger.record(conn, [], dag_run_id=run_id) == 0
    assert statements.starting_with("insert") == []


def test_recording_the_same_decision_again_inserts_nothing(conn, run_id):
    ledger.record(conn, [planned("c1"), skipped("c2", "no_consent")], dag_run_id=run_id)
    conn.commit()
    before = rows(conn)

    # A later run (or a retry, or a backfill) decides the same keys differently: ignored.
    again = [skipped("c1", "goal_reached"), planned("c2", batch_no=3)]
    assert ledger.record(conn, again, dag_run_id="a_later_run") == 0
    conn.commit()

    assert rows(conn) == before


def deferred(contact: str) -> Entry:
    return Entry(program=PROGRAM, step="welcome", contact_id=contact,
                 enrollment_id=f"signup:{contact}", channel="email", state="deferred",
                 due_at=DUE, reason="frequency_cap_full")


def test_a_deferred_row_takes_the_next_decision_once(conn, run_id):
    ledger.record(conn, [deferred("c1")], dag_run_id=run_id)
    assert ledger.record(conn, [planned("c1", batch_no=2)], dag_run_id="a_later_run") == 1
    assert ledger.record(conn, [skipped("c1", "expired")], dag_run_id="a third run") == 0
    conn.commit()
    row = rows(conn)[("welcome", "c1")]
    assert (row["state"], row["reason"], row["batch_no"], row["dag_run_id"]) == (
        "planned", None, 2, "a_later_run")
    assert row["recipient"] == "c1@example.com"


def test_a_ledger_from_before_deferred_existed_accepts_it_after_ensure_schema(conn, run_id):
    with conn.cursor() as cur:
        cur.execute("alter table nurture.message_ledger"
                    " drop constraint message_ledger_state_check")
        cur.execute("alter table nurture.message_ledger add constraint"
                    " message_ledger_state_check check (state in ('planned', 'sending',"
                    " 'sent', 'failed', 'unknown', 'skipped'))")
    conn.commit()
    ledger.ensure_schema(conn)
    assert ledger.record(conn, [deferred("c1")], dag_run_id=run_id) == 1
    conn.commit()


def test_record_inserts_only_the_new_keys_of_a_partly_recorded_batch(conn, run_id):
    ledger.record(conn, [planned("c1"), planned("c2")], dag_run_id=run_id)

    inserted = ledger.record(
        conn,
        [planned("c1"), planned("c2"), planned("c3"),
         planned("c1", enrollment="crm_customer:c1"),  # a second enrollment is a new key
         planned("c1", program=OTHER_PROGRAM)],  # so is another program
        dag_run_id="a_later_run",
    )
    conn.commit()

    assert inserted == 3
    with conn.cursor() as cur:
        cur.execute("select contact_id, enrollment_id, dag_run_id from nurture.message_ledger"
                    " where program = %s order by 1, 2", (PROGRAM,))
        assert cur.fetchall() == [("c1", "crm_customer:c1", "a_later_run"),
                                  ("c1", "signup:c1", run_id),
                                  ("c2", "signup:c2", run_id),
                                  ("c3", "signup:c3", "a_later_run")]


def test_the_unique_key_refuses_a_second_row_for_a_decision(conn, run_id):
    ledger.record(conn, [planned("c1")], dag_run_id=run_id)
    conn.commit()

    with pytest.raises(psycopg2.errors.UniqueViolation), conn.cursor() as cur:
        cur.execute(
            "insert into nurture.message_ledger (program, step, contact_id, enrollment_id,"
            " channel, state, due_at) values (%s, 'welcome', 'c1', 'signup:c1', 'email',"
            " 'planned', now())", (PROGRAM,))
    conn.rollback()


# -- existing_states --------------------------------------------------------------------------


def test_existing_states_maps_step_contact_enrollment_to_state(conn, run_id):
    ledger.record(conn, [planned("c1"), planned("c1", step="check_in", channel="sms"),
                         skipped("c2", "no_consent"),
                         planned("c9", program=OTHER_PROGRAM)], dag_run_id=run_id)
    claim(conn, run_id, "sms", 0)

    assert ledger.existing_states(conn, PROGRAM) == {
        ("welcome", "c1", "signup:c1"): "planned",
        ("check_in", "c1", "signup:c1"): "sending",
        ("welcome", "c2", "signup:c2"): "skipped",
    }
    assert ledger.existing_states(conn, "ledger_test_nothing") == {}


# -- claim_batch ------------------------------------------------------------------------------


def claim(conn, run_id: str, channel: str, batch_no: int) -> list[dict]:
    return ledger.claim_batch(conn, program=PROGRAM, dag_run_id=run_id, channel=channel,
                              batch_no=batch_no)


def seed_batches(conn, run_id: str) -> None:
    """This run: email batch 0 (c1-c3), email batch 1 (c4), SMS batch 0 (c1), a skip;
    another run: email batch 0 (c5, another program, the same keys otherwise)."""
    ledger.record(conn, [
        planned("c1"), planned("c2"), planned("c3"), planned("c4", batch_no=1),
        planned("c1", step="check_in", channel="sms"), skipped("c6", "no_consent"),
    ], dag_run_id=run_id)
    ledger.record(conn, [planned("c5", program=OTHER_PROGRAM)], dag_run_id="another_run")
    conn.commit()


def test_claim_batch_marks_only_this_batchs_planned_rows_sending(conn, run_id, warehouse_url):
    seed_batches(conn, run_id)

    claimed = claim(conn, run_id, "email", 0)

    assert sorted(row["contact_id"] for row in claimed) == ["c1", "c2", "c3"]
    first = next(row for row in claimed if row["contact_id"] == "c1")
    assert set(first) == {"ledger_id", "program", "step", "contact_id", "enrollment_id",
                          "channel", "recipient", "locale"}
    assert (first["program"], first["step"], first["enrollment_id"], first["channel"]) == (
        PROGRAM, "welcome", "signup:c1", "email")
    assert (first["recipient"], first["locale"]) == ("c1@example.com", "en")
    assert first["ledger_id"] == rows(conn)[("welcome", "c1")]["ledger_id"]
    # Committed before anything is sent: another session already sees `sending`.
    assert committed_states(warehouse_url) == {
        ("welcome", "c1"): "sending", ("welcome", "c2"): "sending",
        ("welcome", "c3"): "sending", ("welcome", "c4"): "planned",
        ("check_in", "c1"): "planned", ("welcome", "c6"): "skipped",
    }
    assert committed_states(warehouse_url, program=OTHER_PROGRAM) == {("welcome", "c5"): "planned"}


def test_a_claimed_batch_cannot_be_claimed_again(conn, run_id):
    seed_batches(conn, run_id)
    assert len(claim(conn, run_id, "email", 0)) == 3

    assert claim(conn, run_id, "email", 0) == []


def test_a_batch_with_nothing_planned_claims_nothing(conn, run_id):
    seed_batches(conn, run_id)

    assert claim(conn, run_id, "email", 7) == []
    assert claim(conn, "no_such_run", "email", 0) == []


def test_rows_left_sending_by_an_interrupted_attempt_become_unknown_not_resent(
        conn, run_id, warehouse_url):
    seed_batches(conn, run_id)
    claimed = claim(conn, run_id, "email", 0)
    claim(conn, run_id, "sms", 0)
    # The first attempt settled c1, then its worker died with c2 and c3 in flight.
    c1 = next(row["ledger_id"] for row in claimed if row["contact_id"] == "c1")
    ledger.settle(conn, [Outcome(c1, "sent", provider_message_id="msg-1",
                                 template_version="v1")])

    with psycopg2.connect(warehouse_url) as retry:
        assert claim(retry, run_id, "email", 0) == []
        found = states(retry)
    retry.close()

    assert found[("welcome", "c1")] == ("sent", None)
    assert found[("welcome", "c2")] == ("unknown", "interrupted_during_send")
    assert found[("welcome", "c3")] == ("unknown", "interrupted_during_send")
    assert found[("welcome", "c4")] == ("planned", None)  # another batch
    assert found[("check_in", "c1")] == ("sending", None)  # another channel, still in flight


# -- settle -----------------------------------------------------------------------------------


def test_settle_writes_every_outcome_in_one_statement(conn, run_id, statements):
    seed_batches(conn, run_id)
    claimed = {row["contact_id"]: row["ledger_id"]
               for row in claim(conn, run_id, "email", 0)}
    statements.statements.clear()

    ledger.settle(conn, [
        Outcome(claimed["c1"], "sent", provider_message_id="msg-1", template_version="v1"),
        Outcome(claimed["c2"], "failed", "provider_rejected: SendGrid answered 400",
                template_version="v1"),
        Outcome(claimed["c3"], "unknown", "provider_outcome_unknown: timed out",
                template_version="v1"),
    ])

    assert len(statements.starting_with("update")) == 1
    found = rows(conn)
    c1, c2, c3 = (found[("welcome", c)] for c in ("c1", "c2", "c3"))
    assert (c1["state"], c1["reason"], c1["provider_message_id"], c1["template_version"]) == (
        "sent", None, "msg-1", "v1")
    assert c1["sent_at"] is not None
    assert abs(c1["sent_at"] - datetime.now(UTC)) < timedelta(minutes=1)
    assert (c2["state"], c2["reason"], c2["sent_at"]) == (
        "failed", "provider_rejected: SendGrid answered 400", None)
    assert (c3["state"], c3["reason"], c3["sent_at"]) == (
        "unknown", "provider_outcome_unknown: timed out", None)
    assert c3["updated_at"] >= c3["planned_at"]


def test_settle_touches_only_rows_in_sending(conn, run_id):
    seed_batches(conn, run_id)
    claimed = claim(conn, run_id, "email", 0)
    by_contact = {row["contact_id"]: row["ledger_id"] for row in claimed}
    ledger.settle(conn, [Outcome(by_contact["c1"], "sent", provider_message_id="msg-1")])
    before = rows(conn)

    ledger.settle(conn, [
        # A late or repeated outcome for a settled row is ignored.
        Outcome(by_contact["c1"], "failed", "provider_rejected: late"),
        # So is one for a row never claimed (planned, another batch) or skipped.
        Outcome(before[("welcome", "c4")]["ledger_id"], "sent", provider_message_id="x"),
        Outcome(before[("welcome", "c6")]["ledger_id"], "sent", provider_message_id="y"),
    ])

    after = rows(conn)
    for key in (("welcome", "c1"), ("welcome", "c4"), ("welcome", "c6")):
        assert after[key] == before[key]


def test_settle_nothing_is_a_no_op(conn, statements):
    ledger.settle(conn, [])
    assert statements.starting_with("update") == []


# -- run_counts -------------------------------------------------------------------------------


def test_run_counts_groups_this_runs_rows_by_step_state_and_reason(conn, run_id):
    seed_batches(conn, run_id)
    ledger.record(conn, [skipped("c7", "no_consent"), skipped("c8", "expired"),
                         skipped("c7", "expired", step="check_in", channel="sms")],
                  dag_run_id=run_id)
    ledger.record(conn, [skipped("c9", "no_consent")], dag_run_id="another_run")
    claimed = {row["contact_id"]: row["ledger_id"]
               for row in claim(conn, run_id, "email", 0)}
    ledger.settle(conn, [
        Outcome(claimed["c1"], "sent", provider_message_id="m1"),
        Outcome(claimed["c2"], "sent", provider_message_id="m2"),
        Outcome(claimed["c3"], "failed", "left_audience: contact no longer in audience"),
    ])

    counts = ledger.run_counts(conn, program=PROGRAM, dag_run_id=run_id)

    assert sorted(counts) == sorted([
        ("welcome", "sent", "", 2),
        ("welcome", "failed", "left_audience: contact no longer in audience", 1),
        ("welcome", "planned", "", 1),
        ("welcome", "skipped", "no_consent", 2),
        ("welcome", "skipped", "expired", 1),
        ("check_in", "planned", "", 1),
        ("check_in", "skipped", "expired", 1),
    ])
    assert ledger.run_counts(conn, program=OTHER_PROGRAM, dag_run_id=run_id) == []


def test_claim_batch_takes_at_most_limit_rows_at_a_time(conn, run_id, warehouse_url):
    seed_batches(conn, run_id)
    first = ledger.claim_batch(conn, program=PROGRAM, dag_run_id=run_id, channel="email",
                               batch_no=0, limit=2)
    ledger.settle(conn, [Outcome(r["ledger_id"], "sent", provider_message_id="m")
                         for r in first])  # as the dispatcher does before claiming more
    rest = ledger.claim_batch(conn, program=PROGRAM, dag_run_id=run_id, channel="email",
                              batch_no=0, limit=2)
    assert len(first) == 2 and len(rest) == 1
    assert {r["ledger_id"] for r in first}.isdisjoint(r["ledger_id"] for r in rest)
    assert {row["state"] for row in rows(conn).values()} >= {"sent", "sending"}


# -- enrollment_states ------------------------------------------------------------------------


def enrollment_states(conn, *, program: str = PROGRAM) -> dict[tuple[str, str], dict]:
    """(contact_id, enrollment_id) -> {step: state}, as the plan reads them."""
    with conn.cursor() as cur:
        cur.execute("select contact_id, enrollment_id, states from nurture.enrollment_states"
                    " where program = %s", (program,))
        return {(contact, enrollment): states for contact, enrollment, states in cur}


def as_the_ledger_says(conn, *, program: str = PROGRAM) -> dict[tuple[str, str], dict]:
    with conn.cursor() as cur:
        cur.execute("select contact_id, enrollment_id, jsonb_object_agg(step, state)"
                    " from nurture.message_ledger where program = %s"
                    " group by contact_id, enrollment_id", (program,))
        return {(contact, enrollment): states for contact, enrollment, states in cur}


def test_enrollment_states_follow_every_write_to_the_ledger(conn, run_id):
    seed_batches(conn, run_id)
    assert enrollment_states(conn)[("c1", "signup:c1")] == {"welcome": "planned",
                                                           "check_in": "planned"}
    claimed = claim(conn, run_id, "email", 0)
    ledger.settle(conn, [Outcome(row["ledger_id"], "sent", provider_message_id="m")
                         for row in claimed])
    assert enrollment_states(conn)[("c1", "signup:c1")] == {"welcome": "sent",
                                                           "check_in": "planned"}
    with conn.cursor() as cur:
        cur.execute("delete from nurture.message_ledger where program = %s and"
                    " (contact_id = 'c2' or step = 'check_in')", (PROGRAM,))
    conn.commit()

    found = enrollment_states(conn)
    assert found[("c1", "signup:c1")] == {"welcome": "sent"}
    assert ("c2", "signup:c2") not in found  # its only row went: so did its states
    assert found == as_the_ledger_says(conn)
    assert enrollment_states(conn, program=OTHER_PROGRAM) == {
        ("c5", "signup:c5"): {"welcome": "planned"}}


def test_two_writers_of_one_enrollment_each_keep_their_step(conn, run_id, warehouse_url):
    ledger.record(conn, [planned("c1")], dag_run_id=run_id)  # not committed yet
    other = psycopg2.connect(warehouse_url)
    # The other writer's merge waits for this transaction's, then adds its own step to it.
    writing = threading.Thread(target=lambda: (
        ledger.record(other, [planned("c1", step="check_in", channel="sms")],
                      dag_run_id=run_id), other.commit()))
    writing.start()
    writing.join(timeout=0.5)
    assert writing.is_alive()  # waiting on this enrollment's row
    conn.commit()
    writing.join(timeout=10)
    other.close()

    assert enrollment_states(conn) == {("c1", "signup:c1"): {"welcome": "planned",
                                                            "check_in": "planned"}}


def test_a_ledger_from_before_enrollment_states_gets_them_from_ensure_schema(conn, run_id):
    seed_batches(conn, run_id)
    with conn.cursor() as cur:
        cur.execute("drop table nurture.enrollment_states")

    ledger.ensure_schema(conn)
    conn.commit()

    assert enrollment_states(conn) == as_the_ledger_says(conn) != {}
    assert enrollment_states(conn, program=OTHER_PROGRAM) == as_the_ledger_says(
        conn, program=OTHER_PROGRAM)
