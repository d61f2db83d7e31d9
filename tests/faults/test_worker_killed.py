"""A worker is killed (SIGKILL) in the middle of a dispatch batch, its requests in flight.

The worker runs the DAG in a process of its own; the emulator lets a few emails through,
then holds the next requests, and the worker is killed while they wait. The held requests
then reach the provider anyway (it got them; the answers are lost). Airflow retries the
killed send task: the rows the dead worker left `sending` become `unknown`, the rest of the
batch goes out. The next run resolves the unknown rows the providers' events prove sent,
and sends nothing again.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from nurture import catalog, tasks, warehouse

from . import harness

pytestmark = pytest.mark.e2e

PER_REQUEST = 2  # emails a SendGrid request: the gate counts requests
LET_THROUGH = 10  # requests accepted before the gate holds the rest of the batch


def left_sending() -> list[tuple[str, str, int, int]]:
    """(run id, channel, batch, rows) of the batches a dead worker left rows `sending` in."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select dag_run_id, channel, batch_no, count(*) from nurture.message_ledger"
                    " where program = 'onboarding' and state = 'sending' group by 1, 2, 3")
        return cur.fetchall()


def test_a_worker_killed_mid_batch(scenario):
    program = catalog.program("onboarding")
    with scenario.providers() as providers, harness.emails_per_request(PER_REQUEST):
        providers.gate.hold_after(LET_THROUGH, paths=("/v3/mail/send",))
        worker = scenario.start_worker("killed")
        try:
            harness.wait_until(lambda: providers.gate.held > 0, timeout=900, process=worker,
                               what="email held at the gate")
        except AssertionError as ended:  # say why nothing was held: the worker's outcomes
            raise AssertionError(f"{ended}; the ledger's reasons: {reasons()}") from None
        time.sleep(1)  # the batch's other threads reach the gate too
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        providers.gate.open()
        providers.wait_for_events()
        stranded = left_sending()
        for run_id, channel, batch_no, _ in stranded:  # Airflow's retry of the killed task
            tasks.send(program, run_id=run_id, channel=channel, batch_no=batch_no)
        providers.wait_for_events()
        result = scenario.run()
        providers.wait_for_events()
    counts = scenario.check("worker killed (SIGKILL) mid-batch")

    assert stranded, "the worker was killed before it claimed anything"
    assert result.state == "success"
    assert result.summary["unknown"] == {"reconciled": 0, "still_unknown": counts.unknown}
    assert counts.problems() == []
    # The held requests reached the provider and their events prove it: reconciled.
    assert counts.reconciled >= providers.gate.held * PER_REQUEST
    assert counts.unknown > counts.unknown_sent == 0  # claimed, never sent, not sent now
    received = [message["ledger_id"] for message in providers.outbox.messages()]
    assert sorted(received) == sorted(ledger_ids("sent"))  # the outbox is what the ledger says


def ledger_ids(state: str) -> set[str]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select ledger_id::text from nurture.message_ledger"
                    " where program = 'onboarding' and state = %s", (state,))
        return {ledger_id for (ledger_id,) in cur}


def reasons() -> dict[str, int]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select state || ': ' || coalesce(reason, ''), count(*)"
                    " from nurture.message_ledger where program = 'onboarding' group by 1")
        return dict(cur.fetchall())
