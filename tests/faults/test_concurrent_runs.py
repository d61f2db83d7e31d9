"""Two runs of the same program at once, each in a process of its own (the scheduler's run
beside a `nurture run`, say): planning is serialised per program, each message belongs to
one run's batch at a time, so everything owed goes out once."""

from __future__ import annotations

import json

import pytest

from nurture import warehouse

pytestmark = pytest.mark.e2e


def test_two_runs_of_one_program_at_once(scenario):
    with scenario.providers() as providers:
        workers = [scenario.start_worker(f"run-{n}") for n in (1, 2)]
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
