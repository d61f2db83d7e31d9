"""The frequency cap across programs, on the real ledger: two programs due the same day for
the same contact, with a cap of one marketing message a week, and priority deciding."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from nurture import ledger, tasks, warehouse
from nurture.program import Program, Sender, email

SENDER = Sender("hello@nurture.example", "Nurture")


def program(name: str, *, priority: int, after: timedelta = timedelta(0), **options):
    return Program(name=name, audience=f"{name}_audience", priority=priority, holdout=0,
                   steps=(email("news", after=after, expires_after=timedelta(days=2)),),
                   sender=SENDER, **options)


@pytest.fixture
def contact(warehouse_url) -> str:
    with warehouse.connect() as conn:
        ledger.ensure_schema(conn)
    return f"CAP-{uuid.uuid4().hex[:8]}"


def audience(name: str, contact_id: str, enrolled_at: datetime) -> None:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        cur.execute(f"drop table if exists marts.{name}_audience")
        cur.execute(f"create table marts.{name}_audience as select %s::text as contact_id,"
                    " %s::text as enrollment_id, %s::timestamptz as enrolled_at,"
                    " 'en'::text as locale, %s::text as email, true as has_email_consent",
                    (contact_id, f"{name}:{contact_id}", enrolled_at,
                     f"{contact_id.lower()}@example.com"))


def plan(prog: Program, cap: int = 1) -> dict:
    return tasks.plan(prog, run_id=f"test-{uuid.uuid4().hex[:8]}", dry_run=False,
                      frequency_cap=cap)["counts"]["news"]


def states(contact_id: str) -> dict[str, tuple[str, str | None]]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select program, state, reason from nurture.message_ledger"
                    " where contact_id = %s", (contact_id,))
        return {program: (state, reason) for program, state, reason in cur}


def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:6]
    return f"cap_high_{suffix}", f"cap_low_{suffix}"


def both_due_now(contact_id: str) -> tuple[str, str]:
    """Two new programs (high, low), each with the contact due an hour ago."""
    high, low = names()
    for name in (high, low):
        audience(name, contact_id, datetime.now(UTC) - timedelta(hours=1))
    return high, low


def test_the_first_program_due_takes_the_week_and_the_other_waits(contact):
    high, low = both_due_now(contact)
    assert plan(program(high, priority=90)) == {"planned": 1}
    assert plan(program(low, priority=10)) == {"frequency_cap_full": 1}  # waits...
    assert states(contact) == {high: ("planned", None),
                               low: ("deferred", "frequency_cap_full")}  # ...on record


def test_a_deferred_message_goes_out_when_the_cap_has_room(contact):
    high, low = both_due_now(contact)
    plan(program(high, priority=90))
    assert plan(program(low, priority=10)) == {"frequency_cap_full": 1}
    assert plan(program(low, priority=10)) == {"frequency_cap_full": 1}  # still one row
    assert plan(program(low, priority=10), cap=2) == {"planned": 1}
    assert states(contact)[low] == ("planned", None)


def test_a_deferred_message_closes_when_its_contact_leaves_the_audience(contact):
    high, low = both_due_now(contact)
    plan(program(high, priority=90))
    plan(program(low, priority=10))
    audience(low, "SOMEONE-ELSE", datetime.now(UTC) - timedelta(hours=1))
    assert plan(program(low, priority=10))["left_audience"] == 1
    assert states(contact)[low] == ("skipped", "left_audience")


def test_a_lower_priority_program_leaves_room_for_a_higher_one_due_later_today(contact):
    high, low = names()
    now = datetime.now(UTC)
    audience(high, contact, now + timedelta(hours=6))  # due in 6 hours
    audience(low, contact, now - timedelta(hours=1))  # due now
    assert plan(program(high, priority=90)) == {"not_due": 1}  # ...and recorded as upcoming
    assert plan(program(low, priority=10)) == {"frequency_cap_full": 1}
    audience(high, contact, now - timedelta(minutes=1))  # six hours on
    assert plan(program(high, priority=90)) == {"planned": 1}
    assert states(contact) == {high: ("planned", None), low: ("deferred", "frequency_cap_full")}


def test_a_higher_priority_program_takes_no_room_from_a_lower_one_it_outranks(contact):
    """Reservations only hold lower-priority programs back."""
    high, low = names()
    now = datetime.now(UTC)
    audience(low, contact, now + timedelta(hours=6))
    audience(high, contact, now - timedelta(hours=1))
    assert plan(program(low, priority=10)) == {"not_due": 1}
    assert plan(program(high, priority=90)) == {"planned": 1}


def test_a_program_that_drops_capped_messages_records_it(contact):
    high, low = both_due_now(contact)
    plan(program(high, priority=90))
    assert plan(program(low, priority=10, when_capped="drop")) == {"frequency_capped": 1}
    assert states(contact)[low] == ("skipped", "frequency_capped")


def test_a_higher_cap_lets_both_through(contact):
    high, low = both_due_now(contact)
    plan(program(high, priority=90), cap=2)
    assert plan(program(low, priority=10), cap=2) == {"planned": 1}
