"""The summarize task is the DAG's leaf, so its verdict is the run's: it must fail the run
whenever something upstream went wrong, and say what."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from nurture import ledger, tasks, warehouse
from nurture.exceptions import GuardFailed, RunIncomplete
from nurture.program import Program, Sender, SendWindow, email, sms

PROGRAM = Program(name="tasks_test", audience="tasks_test_audience",
                  steps=(email("hello", after=timedelta(0)),),
                  sender=Sender("hello@nurture.example", "Nurture"))


@pytest.fixture
def run_id(warehouse_url):
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        for table in ("message_ledger", "guard_results", "run_summaries"):
            cur.execute(f"delete from nurture.{table} where program = %s", (PROGRAM.name,))
    return f"manual__{datetime.now(UTC).isoformat()}"


def test_a_run_that_never_planned_fails(run_id):
    with pytest.raises(RunIncomplete, match="nothing was planned"):
        tasks.finish(PROGRAM, run_id=run_id, dry_run=False, plan_counts={})


def test_a_run_the_guard_stopped_fails_naming_the_expectations(run_id):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("insert into nurture.guard_results (program, dag_run_id, success,"
                    " row_count, failures, result) values (%s, %s, false, 3, %s, '{}')",
                    (PROGRAM.name, run_id, json.dumps(["expect_column_values_to_be_unique"
                                                       " on contact_id failed"])))
    with pytest.raises(GuardFailed, match="expect_column_values_to_be_unique"):
        tasks.finish(PROGRAM, run_id=run_id, dry_run=False, plan_counts={})


def test_a_run_that_left_messages_undispatched_fails_and_counts_them(run_id):
    entry = ledger.Entry(program=PROGRAM.name, step="hello", contact_id="c1",
                         enrollment_id="e1", channel="email", state="planned",
                         due_at=datetime.now(UTC), batch_no=0)
    with warehouse.connect() as conn:
        ledger.record(conn, [entry], dag_run_id=run_id)
    with pytest.raises(RunIncomplete, match="1 planned message"):
        tasks.finish(PROGRAM, run_id=run_id, dry_run=False,
                     plan_counts={"hello": {"planned": 1}})
    with warehouse.connect() as conn:  # the summary was stored before failing
        stored = tasks.summary.load(conn, program=PROGRAM.name, dag_run_id=run_id)
    assert stored["steps"][0]["not_sent"] == {"not_dispatched": 1}


def test_a_clean_run_succeeds(run_id):
    made = tasks.finish(PROGRAM, run_id=run_id, dry_run=False,
                        plan_counts={"hello": {"not_due": 4}})
    assert made["steps"][0]["waiting"] == {"not_due": 4}


# --- the trigger form's options on the real ledger ---------------------------------------

TRIAL = Program(name="trial_test", audience="trial_test_audience", holdout=0,
                steps=(email("hello", after=timedelta(0), expires_after=timedelta(days=2)),
                       sms("nudge", after=timedelta(0), expires_after=timedelta(days=2))),
                send_window=SendWindow(channels=()),  # any hour: the tests run at any time
                sender=Sender("hello@nurture.example", "Nurture"))
TRIAL_TEMPLATES = {
    "trial_test/hello/en/subject.txt": "Welcome, {{ first_name }}\n",
    "trial_test/hello/en/body.txt": "Hi {{ first_name }}.\n{% if unsubscribe_url is defined %}"
                                    "Unsubscribe: {{ unsubscribe_url }}{% endif %}\n",
    "trial_test/hello/en/body.html": "<p>Hi {{ first_name }}.</p>\n",
    "trial_test/nudge/en/sms.txt": "{{ first_name }}, your account is waiting.\n",
}


@pytest.fixture
def trial(warehouse_url, tmp_path, monkeypatch):
    """TRIAL's audience: five contacts owed both steps now; C3 has withdrawn SMS consent."""
    for name, text in TRIAL_TEMPLATES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(tasks.settings, "TEMPLATES_DIR", tmp_path)
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        for table in ("message_ledger", "test_sends", "run_summaries"):
            cur.execute(f"delete from nurture.{table} where program = %s", (TRIAL.name,))
        cur.execute("create schema if not exists marts")
        cur.execute(f"drop table if exists marts.{TRIAL.audience}")
        cur.execute(f"""
            create table marts.{TRIAL.audience} as
            select 'C' || n as contact_id, 'E' || n as enrollment_id,
                   now() - interval '1 hour' as enrolled_at, 'c' || n || '@example.com' as email,
                   '+35840123456' || n as phone, 'Name' || n as first_name,
                   'Europe/Helsinki' as time_zone, 'en' as locale, true as has_email_consent,
                   n <> 3 as has_sms_consent
              from generate_series(1, 5) as n""")
    yield
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(f"drop table marts.{TRIAL.audience}")


def ledger_rows(program: Program = TRIAL) -> list[tuple]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select step, contact_id, state, dag_run_id from nurture.message_ledger"
                    " where program = %s order by step, contact_id", (program.name,))
        return cur.fetchall()


def settle_as_sent(run_id: str) -> None:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("update nurture.message_ledger set state = 'sent', sent_at = now()"
                    " where program = %s and dag_run_id = %s", (TRIAL.name, run_id))


def test_a_send_limit_sends_that_many_and_the_rest_go_with_the_next_runs(trial):
    first = tasks.plan(TRIAL, run_id="limit_1", dry_run=False, steps=("hello",), send_limit=2)
    assert first["counts"] == {"hello": {"planned": 2, "run_limit_reached": 3}}
    assert [(step, contact) for step, contact, *_ in ledger_rows()] == [
        ("hello", "C1"), ("hello", "C2")]  # the other three: no row, nothing decided for good
    settle_as_sent("limit_1")

    second = tasks.plan(TRIAL, run_id="limit_2", dry_run=False, steps=("hello",), send_limit=2)
    assert second["counts"]["hello"] == {"planned": 2, "already_sent": 2,
                                         "run_limit_reached": 1}
    settle_as_sent("limit_2")
    tasks.plan(TRIAL, run_id="limit_3", dry_run=False, steps=("hello",))
    assert [(contact, run) for _, contact, _, run in ledger_rows()] == [
        ("C1", "limit_1"), ("C2", "limit_1"), ("C3", "limit_2"), ("C4", "limit_2"),
        ("C5", "limit_3")]


def test_what_an_earlier_run_left_planned_goes_first_under_a_limit(trial):
    tasks.plan(TRIAL, run_id="stranded_1", dry_run=False, steps=("hello",), send_limit=2)
    # its send task never ran: C1 and C2 are still planned when the next run plans
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("update nurture.message_ledger set updated_at = now() - interval '2 hours'"
                    " where program = %s", (TRIAL.name,))
    made = tasks.plan(TRIAL, run_id="stranded_2", dry_run=False, steps=("hello",),
                      send_limit=2)
    assert made["counts"]["hello"] == {"planned": 2, "run_limit_reached": 3}
    assert {(contact, run) for _, contact, _, run in ledger_rows()} == {
        ("C1", "stranded_2"), ("C2", "stranded_2")}  # adopted, no new ones beyond the limit


def test_a_run_of_chosen_steps_records_only_those(trial):
    made = tasks.plan(TRIAL, run_id="steps_1", dry_run=False, steps=("nudge",))
    assert set(made["counts"]) == {"nudge"}
    assert {step for step, *_ in ledger_rows()} == {"nudge"}
    assert made["batches"] == [{"channel": "sms", "batch_no": 0}]


def test_a_test_send_reaches_only_the_marketer_and_leaves_the_ledger_alone(trial, emulator):
    from nurture.run_options import RunOptions
    from nurture.runner import LOCAL_SIGNING_KEY
    from nurture.tokens import InvalidToken, TokenSigner

    _, outbox = emulator
    options = RunOptions(dry_run=True, test_email="marketer@example.com",
                         test_phone="+358501234567", test_contact_id="C3")
    dry = tasks.plan(TRIAL, run_id="test_1", dry_run=True)
    sent = tasks.send_tests(TRIAL, run_id="test_1", options=options)

    assert [(t["step"], t["recipient"], t["sample_contact_id"], t["state"]) for t in sent] == [
        ("hello", "marketer@example.com", "C3", "sent"),
        ("nudge", "+358501234567", "C3", "sent")]  # C3's SMS consent does not matter here
    messages = outbox.messages()
    assert [(m["channel"], m["recipient"]) for m in messages] == [
        ("email", "marketer@example.com"), ("sms", "+358501234567")]
    assert messages[0]["subject"] == "[TEST] Welcome, Name3"
    # The unsubscribe link has the real shape but a throwaway signature: it acts on nobody.
    token = re.search(r"/unsubscribe/(\S+)", messages[0]["text"]).group(1)
    with pytest.raises(InvalidToken):
        TokenSigner([LOCAL_SIGNING_KEY]).verify(token, purpose="unsubscribe")
    assert messages[1]["text"].startswith("[TEST] Name3, your account is waiting.")
    assert not any(m["ledger_id"] for m in messages)
    assert ledger_rows() == []  # nobody's message key is used up

    # A retried plan task sends no second test; the summary lists them.
    assert tasks.send_tests(TRIAL, run_id="test_1", options=options) == []
    assert len(outbox.messages()) == 2
    made = tasks.finish(TRIAL, run_id="test_1", dry_run=True, plan_counts=dry["counts"],
                        options=options)
    assert [(t["step"], t["state"]) for t in made["tests"]] == [("hello", "sent"),
                                                                 ("nudge", "sent")]
    assert made["sent"] == 0 and made["planned"] == 9  # the audience: planned as a dry run

    # C3 still gets their own welcome when the program runs for real.
    tasks.plan(TRIAL, run_id="real_1", dry_run=False, steps=("hello",))
    assert ("hello", "C3", "planned", "real_1") in ledger_rows()


def test_a_test_for_a_contact_outside_the_audience_sends_nothing(trial, emulator):
    from nurture.exceptions import InvalidRunOptions
    from nurture.run_options import RunOptions

    _, outbox = emulator
    options = RunOptions(dry_run=True, test_email="marketer@example.com",
                         test_contact_id="C404")
    with pytest.raises(InvalidRunOptions, match="C404"):
        tasks.send_tests(TRIAL, run_id="test_2", options=options)
    assert outbox.messages() == []
    with pytest.raises(RunIncomplete, match="test send did not go out"):
        tasks.finish(TRIAL, run_id="test_2", dry_run=True, plan_counts={"hello": {}},
                     options=options)
