"""Two runs of the same program at once, each in a process of its own (the scheduler's run
beside a `nurture run`, say): planning is serialised per program, each message belongs to
one run's batch at a time, so everything owed goes out once."""

from __future__ import annotations

import json

import pytest

from nurture import warehouse

from . import harness

pytestmark = pytest.mark.e2e


def test_two_runs_of_one_program_at_once(scenario):
    with scenario.providers() as providers:
        first = scenario.start_worker("run-1")
        # Once the first has registered the DAG in Airflow's SQLite metadata database (two
        # first registrations at once collide there), the second starts while it runs.
        log = scenario.tmp_path / "run-1.log"
        harness.wait_until(lambda: log.exists() and b"task_id=prepare" in log.read_bytes(),
                           timeout=300, what="the first run's first task", process=first)
        workers = [first, scenario.start_worker("run-2")]
        codes = [worker.wait(timeout=1800) for worker in workers]
        providers.wait_for_events()
    counts = scenario.check("two runs of the program at once")

    assert codes == [0, 0]
    states = [json.loads((scenario.tmp_path / f"run-{n}.log").read_text().splitlines()[-1])
              for n in (1, 2)]
    assert [state["state"] for state in states] == ["success", "success"]
    assert counts.problems() == []
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select count(*) from nurture.message_ledger"
                    " where program = 'onboarding' and state = 'sent'")
        sent = cur.fetchone()[0]
    assert counts.messages == sent > 0
