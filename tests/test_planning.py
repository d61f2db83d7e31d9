"""The plan task settles in SQL the rows that cannot send (nurture.settled) and decides the
rest in Python: it must come to exactly what deciding every row in Python comes to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nurture import ledger, planner, planning, settled, warehouse
from nurture.program import Program, Sender, SendWindow, email, sms

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
PROGRAM = Program(
    name="planning_test", audience="planning_test_audience", goal="is_done", holdout=0.2,
    once_per=3 * DAY, priority=40,
    steps=(
        email("welcome", after=timedelta(0), expires_after=DAY),
        email("offer", after=2 * DAY, condition="is_eligible", expires_after=2 * DAY),
        sms("nudge", after=3 * DAY, expires_after=DAY, kind="transactional"),
        email("reminder", before=DAY, anchor="event_at", condition="is_eligible",
              expires_after=12 * HOUR),
        email("alert", after=HOUR, to="owner_email", condition="is_eligible"),
        # A condition SQL would read differently from Python: left to Python.
        email("odd", after=timedelta(0), condition="score", expires_after=DAY),
    ),
    send_window=SendWindow(channels=()),  # any hour: the two plans must not straddle an edge
    sender=Sender("hello@nurture.example", "Nurture"),
)
CONTACTS = 400
EARLIER = datetime(2020, 1, 1, tzinfo=UTC)  # when the earlier runs decided


@pytest.fixture
def audience(warehouse_url):
    """Contacts at every stage of every step, some with decisions already recorded."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        cur.execute("create schema if not exists marts")
        cur.execute(f"drop table if exists marts.{PROGRAM.audience}")
        # Times are whole minutes from now: the two plans, seconds apart, see the same.
        cur.execute(f"""
            create table marts.{PROGRAM.audience} as
            select 'C' || (n / 2) as contact_id, 'E' || n as enrollment_id,
                   date_trunc('minute', now()) - (n % 97) * interval '97 minutes'
                       as enrolled_at,
                   case when n % 11 = 0 then null
                        else date_trunc('minute', now()) + (n % 41 - 20) * interval '2 hours'
                   end as event_at,
                   case when n % 23 = 0 then 'not an address'
                        else 'c' || n || '@example.com' end as email,
                   '+35840123' || lpad(n::text, 4, '0') as phone,
                   case when n % 17 = 0 then null else 'x' || n || '@example.com' end
                       as owner_email,
                   'Europe/Helsinki' as time_zone, 'en' as locale,
                   n % 13 <> 0 as has_email_consent, n % 5 <> 0 as has_sms_consent,
                   case when n % 19 = 0 then null else n % 7 = 0 end as is_done,
                   case when n % 29 = 0 then null else n % 3 <> 0 end as is_eligible,
                   n % 4 as score
              from generate_series(1, {CONTACTS}) as n""")
    yield
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(f"drop table marts.{PROGRAM.audience}")
        cur.execute("delete from nurture.message_ledger where program = %s", (PROGRAM.name,))
        cur.execute("delete from nurture.upcoming_messages where program = %s",
                    (PROGRAM.name,))


def earlier_decisions() -> None:
    """The ledger as earlier runs left it: final decisions, and rows left unfinished."""
    states = ("sent", "skipped", "planned", "deferred", "failed", "sending", "unknown")
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("delete from nurture.message_ledger where program = %s", (PROGRAM.name,))
        cur.execute("delete from nurture.upcoming_messages where program = %s",
                    (PROGRAM.name,))
        for n in range(1, CONTACTS + 1, 3):
            step = PROGRAM.steps[n % len(PROGRAM.steps)]
            state = states[n % len(states)]
            cur.execute(
                "insert into nurture.message_ledger (program, step, contact_id, enrollment_id,"
                " channel, state, reason, due_at, dag_run_id, planned_at, sent_at, updated_at)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, 'earlier', now() - interval '2 days',"
                " case when %s = 'sent' then now() - interval '1 day' end,"
                " now() - interval '2 hours')",
                (PROGRAM.name, step.name, f"C{n // 2}", f"E{n}", step.channel, state,
                 "no_consent" if state == "skipped" else None, EARLIER, state))


def plan(*, dry_run: bool, in_sql: bool, **options) -> dict:
    """A plan from the earlier decisions: its counts and batches, and what it recorded."""
    earlier_decisions()
    made = planning.plan(PROGRAM, run_id="planning", dry_run=dry_run, filters={},
                         frequency_cap=2, steps=options.pop("steps", ()),
                         send_limit=options.pop("send_limit", None), batch_size=7,
                         chunk_rows=9, in_sql=in_sql)
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select step, contact_id, enrollment_id, channel, state, reason, recipient,"
                    " locale, due_at, batch_no, dag_run_id, is_marketing"
                    " from nurture.message_ledger where program = %s order by 1, 2, 3",
                    (PROGRAM.name,))
        recorded = cur.fetchall()
        cur.execute("select step, contact_id, enrollment_id, due_at from"
                    " nurture.upcoming_messages where program = %s order by 1, 2, 3",
                    (PROGRAM.name,))
        upcoming = cur.fetchall()
    return {"counts": {step: dict(counts) for step, counts in made.counts.items()},
            "batches": made.batches, "recorded": recorded, "upcoming": upcoming}


@pytest.mark.parametrize("options", [{}, {"send_limit": 5}, {"steps": ("offer", "odd")}])
@pytest.mark.parametrize("dry_run", [True, False])
def test_settling_in_sql_decides_exactly_as_deciding_every_row_in_python(
        audience, dry_run, options):
    in_python = plan(dry_run=dry_run, in_sql=False, **dict(options))
    in_sql = plan(dry_run=dry_run, in_sql=True, **dict(options))
    assert in_sql == in_python
    assert sum(in_sql["counts"]["offer"].values()) > 0  # the case decides something
    if not dry_run and not options:  # settled rows' skips and upcoming messages recorded
        assert in_sql["upcoming"]
        assert any(row[4:6] == ("skipped", "expired") for row in in_sql["recorded"])


@pytest.mark.parametrize("as_view", [False, True], ids=["a table", "a view"])
@pytest.mark.parametrize("few", [400, 399], ids=["its enrollments' states", "the program's"])
def test_an_audience_of_few_enrollments_reads_their_states_only_and_settles_alike(
        audience, monkeypatch, few, as_view):
    """400 enrollments: at most `few`, the settling reads their states by index; more, it
    joins the program's. The decisions are the same either way, for an audience that is
    a table or a view."""
    monkeypatch.setattr(settled, "FEW_ENROLLMENTS", few)
    with warehouse.connect() as conn, conn.cursor() as cur:
        found = settled._few_enrollments(cur, f"marts.{PROGRAM.audience}", "true", [])
        assert (sorted(found) if found else found) == (
            sorted(f"E{n}" for n in range(1, CONTACTS + 1)) if few == 400 else None)
        assert sorted(settled._few_enrollments(cur, f"marts.{PROGRAM.audience}",
                                               "contact_id = %s", ["C7"])) == ["E14", "E15"]
        if as_view:
            cur.execute(f"alter table marts.{PROGRAM.audience} rename to audience_rows")
            cur.execute(f"create view marts.{PROGRAM.audience} as"
                        " select * from marts.audience_rows")
    try:
        assert plan(dry_run=False, in_sql=True) == plan(dry_run=False, in_sql=False)
    finally:
        if as_view:
            with warehouse.connect() as conn, conn.cursor() as cur:
                cur.execute(f"drop view marts.{PROGRAM.audience}")
                cur.execute(f"alter table marts.audience_rows rename to {PROGRAM.audience}")


def test_the_settling_reads_the_states_of_the_enrollments_the_look_found_only(
        audience, monkeypatch):
    """The test above passes whether or not the look narrows the join: given a look that
    found none of the audience's enrollments, SQL settles nothing as already decided."""
    earlier_decisions()

    def already_settled() -> int:
        with warehouse.connect() as conn:
            settling = settled.settle(conn, PROGRAM, PROGRAM.steps, now=datetime.now(UTC),
                                      where="true", params=[],
                                      types=settled.column_types(conn, PROGRAM),
                                      columns=planner.required_columns(PROGRAM))
            already = sum(rows for (_, reason), rows in settling.counts(conn).items()
                          if reason.startswith("already_"))
            conn.rollback()
        return already

    assert already_settled() > 0
    monkeypatch.setattr(settled, "_few_enrollments", lambda *args: [])
    assert already_settled() == 0


def test_sql_settles_each_reason_it_knows_and_leaves_the_rest_to_python(audience):
    earlier_decisions()
    now = datetime.now(UTC)
    with warehouse.connect() as conn:
        types = settled.column_types(conn, PROGRAM)
        settling = settled.settle(conn, PROGRAM, PROGRAM.steps, now=now, where="true",
                                  params=[], types=types,
                                  columns=planner.required_columns(PROGRAM))
        counts = settling.counts(conn)
        with conn.cursor() as cur:
            cur.execute(f"select count(*) filter (where plan_settled), count(*)"
                        f" from {settling.table}")
            settled_rows, rows = cur.fetchone()
        conn.rollback()
    reasons = {reason for _, reason in counts}
    assert {"not_due", "goal_reached", "expired", "condition_not_met",
            "condition_not_yet_met", "already_sent"} <= reasons
    # A condition that is not boolean: nothing past the goal is settled in SQL.
    assert {reason for step, reason in counts if step == "odd"
            if not reason.startswith("already_")} == {"goal_reached"}
    assert 0 < settled_rows < rows


def test_a_dry_run_renders_with_the_links_the_dispatcher_would_add(monkeypatch):
    """A survey email needs its survey link: with a public URL the dispatcher adds it, so
    the dry run renders it too; without one, the send would fail, and so does the check."""
    from nurture import catalog

    survey = catalog.program("satisfaction_survey")
    contact = {"contact_id": "C1", "enrollment_id": "onboarding_30d:C1",
               "first_name": "Aino", "email": "aino@example.com", "trigger": "onboarding_30d"}
    monkeypatch.setenv("NURTURE_PUBLIC_URL", "https://nurture.example")
    assert planning.RenderCheck(survey).renders("survey_email", "en", contact)
    monkeypatch.delenv("NURTURE_PUBLIC_URL")
    assert not planning.RenderCheck(survey).renders("survey_email", "en", contact)
