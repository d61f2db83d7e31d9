"""The webinar program end to end: demo data → dbt (Cosmos) → guard (GX) → seats → plan →
SendGrid/Twilio SDKs → emulator, through Airflow's `dag.test()`: a dry run narrowed to one
webinar, a first run, then a seated registrant of W003 cancels and a second run promotes
the first on its waitlist.

The oracle is the demo dataset (`seed.build()`'s rows: who registered when, who cancelled,
who attended, each webinar's capacity), not the planner's or the allocator's code.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from nurture import ledger, runner, seed, warehouse
from nurture.emulator import OutboxStore
from nurture.policies import in_holdout

pytestmark = pytest.mark.e2e

CANCELLED_IN_BETWEEN = "R-W003-3"
VALID_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def execute(sql: str, params=None):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def reset_webinar() -> None:
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        cur.execute("delete from nurture.message_ledger where program = 'webinar'")
        cur.execute("delete from nurture.webinar_seats")


@pytest.fixture(scope="module")
def fresh_webinar(warehouse_url, airflow_db) -> None:
    reset_webinar()


@pytest.fixture(scope="module")
def demo(fresh_webinar):
    data = seed.build()
    with warehouse.connect() as conn:
        seed.load(conn, data)
    return data


def w003_seated() -> int:
    return execute("select count(*) from nurture.webinar_seats"
                   " where webinar_id = 'W003' and seat_status = 'seated'")[0][0]


@pytest.fixture(scope="module")
def runs(demo, tmp_path_factory):
    """{"dry", "first", "second"}: (result, messages sent by that run, W003's seated count
    after it), plus the seats after the dry run."""
    outbox_path = tmp_path_factory.mktemp("webinar") / "outbox.sqlite"
    done = {}
    with runner.emulated_providers(outbox_path) as providers:
        store = OutboxStore(outbox_path)
        dry = runner.run_program("webinar", dry_run=True, filters={"webinar_id": "W001"})
        done["dry"] = (dry, store.messages(), w003_seated())
        done["seats_after_dry_run"] = execute("select count(*) from nurture.webinar_seats")[0][0]
        done["ledger_after_dry_run"] = execute(
            "select count(*) from nurture.message_ledger where program = 'webinar'")[0][0]
        first = runner.run_program("webinar")
        providers.wait_for_events()
        sent_first = store.messages()
        done["first"] = (first, sent_first, w003_seated())
        execute("update raw.webinar_registrations set cancelled_at = now()"
                " where registration_id = %s", (CANCELLED_IN_BETWEEN,))
        second = runner.run_program("webinar")
        providers.wait_for_events()
        done["second"] = (second, store.messages()[len(sent_first):], w003_seated())
    return done


# --- the oracle, from the demo rows ---------------------------------------------------

def registrations(demo, webinar_id: str) -> list[tuple]:
    """(registration_id, contact_id, is_cancelled), in order of registration."""
    rows = sorted((r for r in demo.tables["webinar_registrations"] if r[1] == webinar_id),
                  key=lambda r: (r[3], r[0]))
    return [(r[0], r[2], r[4] is not None) for r in rows]


def capacity(demo, webinar_id: str) -> int:
    return next(r[5] for r in demo.tables["webinars"] if r[0] == webinar_id)


def seated_and_waiting(demo, webinar_id: str) -> tuple[list[str], list[str]]:
    """Registrants (contact ids) seated on first allocation, and the waitlist in order."""
    active = [contact for _, contact, cancelled in registrations(demo, webinar_id)
              if not cancelled]
    return active[:capacity(demo, webinar_id)], active[capacity(demo, webinar_id):]


def contact_of_registration(demo, registration_id: str) -> str:
    return next(r[2] for r in demo.tables["webinar_registrations"] if r[0] == registration_id)


def invitable_leads(demo) -> list[str]:
    """Leads (W001's audience) with a valid email address and email consent now, outside
    the webinar program's holdout group (5%, the Program default)."""
    latest: dict[tuple[str, str], tuple] = {}
    for _, contact, channel, status, _, recorded_at, _ in demo.tables["consents"]:
        if (contact, channel) not in latest or recorded_at >= latest[contact, channel][0]:
            latest[contact, channel] = (recorded_at, status)
    return sorted({row[0] for row in demo.tables["crm_contacts"]
                   if row[7] == "lead" and row[1] and VALID_EMAIL.match(row[1])
                   and latest.get((row[0], "email"), (None, ""))[1] == "opted_in"
                   and not in_holdout("webinar", row[0], 0.05)})


def expected_first_run(demo) -> Counter:
    """(contact_id, step, webinar_id) the first run should send, once each."""
    expected = Counter()
    expected.update((contact, "invitation", "W001") for contact in invitable_leads(demo))
    seated, waiting = seated_and_waiting(demo, "W003")
    expected.update((contact, step, "W003") for contact in seated
                    for step in ("confirmation", "reminder"))
    expected.update((contact, "waitlist", "W003") for contact in waiting)
    w004, _ = seated_and_waiting(demo, "W004")
    expected.update((contact, step, "W004") for contact in w004
                    for step in ("confirmation", "reminder_sms"))
    attended = {r[1] for r in demo.tables["webinar_attendance"] if r[0] == "W005"}
    for _, contact, _ in registrations(demo, "W005"):
        expected[(contact, "thank_you" if contact in attended else "missed_you", "W005")] += 1
    return expected


# --- what was sent, mapped back to contacts and webinars through the ledger -----------

def sent_keys(messages) -> Counter:
    rows = execute("select ledger_id::text, contact_id, enrollment_id from nurture.message_ledger"
                   " where program = 'webinar' and ledger_id = any(%s::uuid[])",
                   ([m["ledger_id"] for m in messages],))
    owner = {ledger_id: (contact, enrollment.removeprefix("webinar:"))
             for ledger_id, contact, enrollment in rows}
    return Counter((owner[m["ledger_id"]][0], m["step"], owner[m["ledger_id"]][1])
                   for m in messages)


def test_every_run_succeeds(runs):
    assert [runs[name][0].state for name in ("dry", "first", "second")] == ["success"] * 3


def test_a_dry_run_for_one_webinar_counts_only_it_and_changes_nothing(runs, demo):
    dry, messages, _ = runs["dry"]
    assert messages == []
    assert runs["seats_after_dry_run"] == 0 and runs["ledger_after_dry_run"] == 0
    assert dry.summary["dry_run"] is True and dry.summary["sent"] == 0
    by_step = {entry["step"]: entry for entry in dry.summary["steps"]}
    leads = invitable_leads(demo)
    assert by_step["invitation"]["planned"] == len(leads) == dry.summary["planned"]
    w001_rows = len({row[0] for row in demo.tables["crm_contacts"] if row[7] == "lead"})
    for step, entry in by_step.items():  # W001's leads only, nobody from another webinar
        decided = (entry["planned"] + sum(entry["not_sent"].values())
                   + sum(entry["waiting"].values()))
        assert decided == w001_rows, step


def test_first_run_sends_exactly_what_the_demo_calls_for(runs, demo):
    first, messages, _ = runs["first"]
    assert sent_keys(messages) == expected_first_run(demo)
    assert first.summary["sent"] == len(messages)


def test_the_waitlist_notice_names_the_place(runs, demo):
    _, waiting = seated_and_waiting(demo, "W003")
    assert waiting == [contact_of_registration(demo, "R-W003-5")]
    notices = [m for m in runs["first"][1] if m["step"] == "waitlist"]
    assert len(notices) == 1
    assert "you're number 1 on the waitlist" in notices[0]["text"]


def test_an_expired_reminder_is_recorded_not_sent(runs, demo):
    w004 = {contact for _, contact, _ in registrations(demo, "W004")}
    rows = execute("select contact_id, state, reason from nurture.message_ledger"
                   " where program = 'webinar' and step = 'reminder'"
                   " and enrollment_id = 'webinar:W004' and contact_id = any(%s)",
                   (sorted(w004),))
    assert sorted(rows) == [(contact, "skipped", "expired") for contact in sorted(w004)]


def test_a_cancelled_registrant_gets_nothing_for_the_webinar(runs, demo):
    cancelled = contact_of_registration(demo, "R-W003-2")
    everything = sent_keys(runs["first"][1] + runs["second"][1])
    assert [key for key in everything if key[0] == cancelled and key[2] == "W003"] == []


def test_a_freed_seat_goes_to_the_waitlist_once(runs, demo):
    second, messages, _ = runs["second"]
    promoted = contact_of_registration(demo, "R-W003-5")
    assert [key for key in sent_keys(messages) if key[1] == "promoted"] == [
        (promoted, "promoted", "W003")]
    assert {key[0] for key in sent_keys(messages)} == {promoted}
    assert second.summary["sent"] == len(messages)
    seats = dict(execute("select registration_id, (seat_status, promoted_at is not null)"
                         " from nurture.webinar_seats where webinar_id = 'W003'"))
    assert seats == {"R-W003-1": "(seated,f)", "R-W003-3": "(released,f)",
                     "R-W003-4": "(seated,f)", "R-W003-5": "(seated,t)"}


def test_the_promoted_registrant_gets_the_day_before_reminder(runs, demo):
    promoted = contact_of_registration(demo, "R-W003-5")
    assert sent_keys(runs["second"][1]) == Counter({(promoted, "promoted", "W003"): 1,
                                                    (promoted, "reminder", "W003"): 1})


def test_capacity_is_never_exceeded(runs, demo):
    limit = capacity(demo, "W003")
    assert [runs[name][2] for name in ("dry", "first", "second")] == [0, limit, limit]
    rows = execute("select webinar_id, count(*) from nurture.webinar_seats"
                   " where seat_status = 'seated' group by webinar_id")
    for webinar_id, seated in rows:
        assert seated <= capacity(demo, webinar_id), webinar_id


def test_nothing_is_sent_twice(runs):
    everything = sent_keys(runs["first"][1] + runs["second"][1])
    assert [key for key, count in everything.items() if count > 1] == []
