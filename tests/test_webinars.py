"""Webinar seats on the embedded PostgreSQL, over the real dbt staging views: capacity is
never exceeded, the waitlist is promoted in registration order, and overlapping runs or
retries allocate each seat once (`nurture.webinars.allocate_seats`, and the plan task that
calls it).

Each test uses webinars of its own (`WT..`, for an audience stage nobody is in), next to
the demo webinars, which are left alone: every call here is narrowed to one webinar.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from nurture import seed, settings, tasks, warehouse
from nurture.webinars import allocate_seats

HOUR = timedelta(hours=1)


def reset_webinar() -> None:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("delete from nurture.message_ledger where program = 'webinar'")
        cur.execute("delete from nurture.webinar_seats")


def execute(sql: str, params=None):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


@pytest.fixture(scope="module")
def demo(warehouse_url):
    """The demo data with the webinar views built once; its contacts register below."""
    with warehouse.connect() as conn:
        data = seed.build()
        seed.load(conn, data)
    reset_webinar()
    result = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "run", "--quiet", "-s", "+webinar_audience"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield data
    reset_webinar()


@pytest.fixture(scope="module")
def program(demo):
    """The webinar program as `dags/webinar.py` defines it."""
    spec = importlib.util.spec_from_file_location("webinar_dag",
                                                  settings.DAGS_FOLDER / "webinar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.webinar


@pytest.fixture(scope="module")
def people(demo) -> list[str]:
    """Contacts no demo webinar uses, with a valid address and consent for both channels."""
    registered = {row[2] for row in demo.tables["webinar_registrations"]}
    return [contact for contact, scenario in demo.scenario_of.items()
            if scenario.name == "day_2" and contact not in registered]


def build_audience(*models: str) -> None:
    """What the DAG's dbt task does before each plan: who is in the webinar audience is a
    table (int_webinar_audience_members); registrations and seats are read live. (dbt
    replaces a table with a drop cascade: the view over it is built again too.)"""
    built = subprocess.run([sys.executable, "-m", "nurture.cli", "dbt", "run", "--quiet", "-s",
                            *models, "int_webinar_audience_members", "webinar_audience"],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr


def add_webinar(webinar_id: str, *, capacity: int, contacts: list[str]) -> list[str]:
    """A webinar tomorrow with `contacts` registered five minutes apart, in that order, and
    the audience built; returns their registration ids."""
    now = datetime.now(UTC)
    execute("insert into raw.webinars values (%s, 'Test webinar', %s, 'Europe/Helsinki', 60,"
            " %s, 'nobody', 'https://live.example/t', 'https://rec.example/t', %s)",
            (webinar_id, now + 24 * HOUR, capacity, now))
    registrations = [f"R-{webinar_id}-{n}" for n in range(1, len(contacts) + 1)]
    for n, (registration_id, contact) in enumerate(zip(registrations, contacts, strict=True)):
        execute("insert into raw.webinar_registrations values (%s, %s, %s, %s, null, %s)",
                (registration_id, webinar_id, contact,
                 now - 5 * HOUR + n * timedelta(minutes=5), now))
    build_audience()
    return registrations


def cancel(registration_id: str) -> None:
    execute("update raw.webinar_registrations set cancelled_at = now()"
            " where registration_id = %s", (registration_id,))


def allocate(webinar_id: str) -> dict[str, int]:
    with warehouse.connect() as conn:
        return allocate_seats(conn, now=datetime.now(UTC), filters={"webinar_id": webinar_id})


def seats(webinar_id: str) -> dict[str, tuple]:
    """registration id -> (seat_status, promoted_at is set)."""
    return {registration: (status, promoted) for registration, status, promoted in execute(
        "select registration_id, seat_status, promoted_at is not null"
        " from nurture.webinar_seats where webinar_id = %s", (webinar_id,))}


def seats_snapshot() -> list[tuple]:
    return execute("select * from nurture.webinar_seats order by registration_id")


def ledger_snapshot() -> list[tuple]:
    return execute("select step, contact_id, enrollment_id, state, reason, dag_run_id"
                   " from nurture.message_ledger where program = 'webinar'"
                   " order by step, contact_id, enrollment_id")


def waitlist_positions(webinar_id: str) -> dict[str, int]:
    return dict(execute("select registration_id, waitlist_position"
                        " from marts.webinar_audience"
                        " where webinar_id = %s and waitlist_position is not null",
                        (webinar_id,)))


def at_once(count: int, work: Callable[[], object]) -> list:
    """Run `work` in `count` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def test_each_contacts_current_registration_is_live_before_cancelled_then_latest(people):
    """The registration a contact's webinar messages follow, when they have several."""
    now = datetime.now(UTC)
    a, b, c, d, e = people[:5]
    rows = [  # (registration, contact, registered hours ago or None, cancelled)
        ("R1", a, 5, False), ("R2", a, 1, True),    # a cancelled re-registration
        ("R3", b, 5, True), ("R4", b, 1, False),    # registered again after cancelling
        ("R5", c, 5, False), ("R6", c, 1, False),   # registered twice
        ("R7", d, 2, False), ("R8", d, 2, False),   # at the same moment
        ("R9", e, None, False), ("R10", e, 1, False),  # one without a date
    ]
    try:
        for registration, contact, hours_ago, cancelled in rows:
            execute("insert into raw.webinar_registrations values (%s, 'WTR', %s, %s, %s, %s)",
                    (f"R-WTR-{registration}", contact,
                     None if hours_ago is None else now - hours_ago * HOUR,
                     now if cancelled else None, now))
        current = execute("select contact_id, registration_id"
                          " from intermediate.int_webinar_registrants"
                          " where webinar_id = 'WTR' order by registration_id")
    finally:
        execute("delete from raw.webinar_registrations where webinar_id = 'WTR'")
    # A list, not a dict: a second row for a contact must show.
    assert current == sorted([(a, "R-WTR-R1"), (b, "R-WTR-R4"), (c, "R-WTR-R6"),
                              (d, "R-WTR-R8"), (e, "R-WTR-R9")], key=lambda row: row[1])


def test_capacity_holds_and_the_waitlist_moves_up_in_order(people):
    r1, r2, r3, r4, r5 = add_webinar("WT01", capacity=2, contacts=people[:5])

    assert allocate("WT01") == {"released": 0, "promoted": 0, "seated": 2, "waitlisted": 3}
    assert seats("WT01") == {r1: ("seated", False), r2: ("seated", False),
                             r3: ("waitlisted", False), r4: ("waitlisted", False),
                             r5: ("waitlisted", False)}
    assert waitlist_positions("WT01") == {r3: 1, r4: 2, r5: 3}

    cancel(r1)
    assert allocate("WT01") == {"released": 1, "promoted": 1, "seated": 0, "waitlisted": 0}
    assert seats("WT01") == {r1: ("released", False), r2: ("seated", False),
                             r3: ("seated", True), r4: ("waitlisted", False),
                             r5: ("waitlisted", False)}
    assert waitlist_positions("WT01") == {r4: 1, r5: 2}

    cancel(r4)  # from the waitlist: no seat frees up, the one behind moves up
    assert allocate("WT01") == {"released": 1, "promoted": 0, "seated": 0, "waitlisted": 0}
    assert seats("WT01") == {r1: ("released", False), r2: ("seated", False),
                             r3: ("seated", True), r4: ("released", False),
                             r5: ("waitlisted", False)}
    assert waitlist_positions("WT01") == {r5: 1}

    before = seats_snapshot()
    assert allocate("WT01") == {"released": 0, "promoted": 0, "seated": 0, "waitlisted": 0}
    assert seats_snapshot() == before  # a retry changes nothing


def test_overlapping_allocations_promote_once(people):
    registrations = add_webinar("WT02", capacity=2, contacts=people[5:9])
    allocate("WT02")
    cancel(registrations[0])
    first_waiting = registrations[2]

    def allocate_when_released() -> dict[str, int]:
        with warehouse.connect() as conn:
            return allocate_seats(conn, now=datetime.now(UTC), filters={"webinar_id": "WT02"})

    counts = at_once(4, allocate_when_released)

    assert sum(c["promoted"] for c in counts) == 1
    assert sum(c["released"] for c in counts) == 1
    assert seats("WT02") == {registrations[0]: ("released", False),
                             registrations[1]: ("seated", False),
                             first_waiting: ("seated", True),
                             registrations[3]: ("waitlisted", False)}


def test_overlapping_allocations_fill_a_new_seat_once(people):
    """A seat that frees up without a cancellation (the capacity raised) has no released
    row for overlapping runs to queue on: only the allocator's lock keeps them apart."""
    registrations = add_webinar("WT05", capacity=2, contacts=people[12:16])
    allocate("WT05")
    execute("update raw.webinars set capacity = 3 where webinar_id = 'WT05'")

    def allocate_now() -> dict[str, int]:
        with warehouse.connect() as conn:
            return allocate_seats(conn, now=datetime.now(UTC), filters={"webinar_id": "WT05"})

    counts = at_once(4, allocate_now)

    assert sum(c["promoted"] for c in counts) == 1
    assert seats("WT05") == {registrations[0]: ("seated", False),
                             registrations[1]: ("seated", False),
                             registrations[2]: ("seated", True),
                             registrations[3]: ("waitlisted", False)}


def test_overlapping_plans_record_one_promotion(people, program):
    registrations = add_webinar("WT03", capacity=1, contacts=people[9:12])
    allocate("WT03")
    cancel(registrations[0])
    promoted_contact = people[10]

    run_ids = iter(["test_plan_a", "test_plan_b"])

    def plan() -> dict:
        return tasks.plan(program, run_id=next(run_ids), dry_run=False,
                          filters={"webinar_id": "WT03"})

    at_once(2, plan)

    # One decision, whichever plan went first; the other may adopt it while it is unsent
    # (so both may count it planned), but there is one row, so one message.
    rows = execute("select contact_id, state, dag_run_id from nurture.message_ledger"
                   " where program = 'webinar' and step = 'promoted'"
                   " and enrollment_id = 'webinar:WT03'")
    assert [(contact, state) for contact, state, _ in rows] == [(promoted_contact, "planned")]
    assert rows[0][2] in ("test_plan_a", "test_plan_b")
    assert [status for status, _ in seats("WT03").values()].count("seated") == 1
    # Narrowed to WT03: nothing was decided for the demo webinars' audiences.
    assert execute("select count(*) from nurture.message_ledger where program = 'webinar'"
                   " and enrollment_id not like 'webinar:WT%'") == [(0,)]


def test_a_dry_run_changes_nothing_and_counts_only_its_webinar(demo, program):
    seats_before, ledger_before = seats_snapshot(), ledger_snapshot()
    assert not any(row[1] == "W003" for row in seats_before)  # W003 not yet allocated

    result = tasks.plan(program, run_id="test_dry_run", dry_run=True,
                        filters={"webinar_id": "W003"})

    assert seats_snapshot() == seats_before
    assert ledger_snapshot() == ledger_before
    assert result["batches"] == []
    (w003_rows,), (all_rows,) = execute(
        "select count(*) from marts.webinar_audience where webinar_id = 'W003'"
        " union all select count(*) from marts.webinar_audience")
    assert 5 <= w003_rows < all_rows
    for step, counts in result["counts"].items():
        assert sum(counts.values()) == w003_rows, step
    # Seats were allocated inside the dry run (then rolled back): R-W003-1, 3 and 4 would
    # be confirmed and R-W003-5 waitlisted.
    assert result["counts"]["confirmation"].get("planned") == 3
    assert result["counts"]["waitlist"].get("planned") == 1
    assert result["counts"]["invitation"].get("planned", 0) == 0


def test_who_registers_after_the_reminder_fell_due_still_gets_it(demo, program):
    """WT04 starts in 20 hours, so its day-before reminder is due; a lead it is for registers
    after a plan has already run."""
    now = datetime.now(UTC)
    execute("insert into raw.webinars values ('WT04', 'Test webinar', %s, 'Europe/Helsinki',"
            " 60, 5, 'lead', 'https://live.example/t', 'https://rec.example/t', %s)",
            (now + 20 * HOUR, now))
    lead = next(row[0] for row in demo.tables["crm_contacts"] if row[7] == "lead")
    tasks.plan(program, run_id="test_late_1", dry_run=False, filters={"webinar_id": "WT04"})
    execute("insert into raw.webinar_registrations values ('R-WT04-1', 'WT04', %s, now(),"
            " null, now())", (lead,))
    build_audience()

    tasks.plan(program, run_id="test_late_2", dry_run=False, filters={"webinar_id": "WT04"})

    decided = dict(execute("select step, (state, reason) from nurture.message_ledger"
                           " where program = 'webinar' and enrollment_id = 'webinar:WT04'"
                           " and contact_id = %s", (lead,)))
    assert decided["confirmation"] == "(planned,)"
    assert decided["reminder"] == "(planned,)", decided


def test_someone_unregistered_is_in_the_audience_only_while_a_message_can_fall_due(
        demo, program):
    """Everyone a webinar is for × every upcoming webinar is millions of rows at scale, and
    nothing is owed to someone who has not registered except the invitation and, once
    invited, the last call: the audience has them only while one of those can fall due,
    from a day ahead (the frequency cap's lookahead). Windows read from the program."""
    from nurture.policies import LOOKAHEAD

    def ahead(step_name: str) -> tuple[timedelta, timedelta]:
        """How far ahead of now a webinar starts while the step can fall due."""
        step = program.step(step_name)
        return -step.after - step.expires_after, -step.after + LOOKAHEAD

    (invite_from, invite_to), (call_from, call_to) = ahead("invitation"), ahead("last_call")
    starts = {"WTI1": invite_from + HOUR, "WTI2": invite_to - HOUR,
              "WTI3": invite_from - HOUR, "WTI4": invite_to + HOUR,
              "WTL1": (call_from + call_to) / 2}
    now = datetime.now(UTC)
    leads = sorted({row[0] for row in demo.tables["crm_contacts"] if row[7] == "lead"})
    try:
        for webinar_id, start in starts.items():
            execute("insert into raw.webinars values (%s, 'Test webinar', %s,"
                    " 'Europe/Helsinki', 60, 5, 'lead', 'https://live.example/t',"
                    " 'https://rec.example/t', %s)", (webinar_id, now + start, now))
        execute("insert into nurture.message_ledger (program, step, contact_id, enrollment_id,"
                " channel, state, due_at) values ('webinar', 'invitation', %s,"
                " 'webinar:WTL1', 'email', 'sent', now())", (leads[0],))
        build_audience("int_webinar_invitees")

        rows = execute("select webinar_id, contact_id from marts.webinar_audience"
                       " where webinar_id = any(%s)", (list(starts),))
        by_webinar = {w: sorted(c for webinar, c in rows if webinar == w) for w in starts}
        assert by_webinar == {"WTI1": leads, "WTI2": leads, "WTI3": [], "WTI4": [],
                              "WTL1": [leads[0]]}
    finally:
        execute("delete from raw.webinars where webinar_id = any(%s)", (list(starts),))
        execute("delete from nurture.message_ledger where enrollment_id = 'webinar:WTL1'")
