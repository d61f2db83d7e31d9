"""The summarize task is the DAG's leaf, so its verdict is the run's: it must fail the run
whenever something upstream went wrong, and say what."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from nurture import ledger, tasks, warehouse
from nurture.exceptions import GuardFailed, RunIncomplete
from nurture.program import Program, Sender, email

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
