"""The warehouse restarts in the middle of a task, cutting every open connection.

During the plan: its transaction is lost whole, and the task's retry plans again. During a
send: the requests already made went out, the batch cannot record them, the task fails; its
retry finishes the batch without sending anything twice — what was claimed before the
restart becomes `unknown` (never re-sent), and the providers' events, which wait out the
outage, prove it sent: the run reconciles those that arrived in time, the next one (its
`prepare`) the rest."""

from __future__ import annotations

import itertools

import pytest

from nurture import catalog, dispatcher, ledger, tasks, warehouse

from . import harness

pytestmark = pytest.mark.e2e

RESTART_AT = 10  # the request holding the n-th email of the batch goes after the restart


def test_a_warehouse_restart_during_the_plan(scenario, monkeypatch):
    record, restarts = ledger.record, []

    def record_across_a_restart(conn, entries, **kwargs):
        if not restarts:
            harness.warehouse_outage(down_for=1.0)
            restarts.append(len(entries))
        return record(conn, entries, **kwargs)

    monkeypatch.setattr(ledger, "record", record_across_a_restart)
    with scenario.providers() as providers:
        result = scenario.run()
        providers.wait_for_events()
    counts = scenario.check("warehouse restarts during the plan")

    assert restarts, "the restart was never injected"
    assert result.state == "success"  # the plan task's retry planned it all
    assert counts.problems() == []
    assert counts.messages == result.summary["sent"] > 0


def test_a_warehouse_restart_during_a_send_task(scenario, monkeypatch):
    deliver_many, emails, restarted = dispatcher.deliver_many, itertools.count(1), []

    def deliver_across_a_restart(job, items):
        for row, _, _ in items:
            if row["channel"] == "email" and next(emails) == RESTART_AT:
                harness.warehouse_outage(down_for=1.0)
                restarted.append(row["ledger_id"])
        return deliver_many(job, items)

    monkeypatch.setattr(dispatcher, "deliver_many", deliver_across_a_restart)
    # Five emails a request: the restart comes while earlier requests of the batch are out.
    with scenario.providers() as providers, harness.emails_per_request(5):
        result = scenario.run()
        providers.wait_for_events()
    tasks.prepare(catalog.program("onboarding"))  # the next run's first task: reconcile
    counts = scenario.check("warehouse restarts during a send task")

    assert restarted, "the restart was never injected"
    assert result.state == "success"  # the send task's retry finished the batch
    assert counts.problems() == []
    assert counts.reconciled > 0  # sent before the restart, proved by their events
    assert counts.unknown_sent == 0
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select count(*) from nurture.message_ledger"
                    " where program = 'onboarding' and state = 'sent'")
        assert counts.messages == cur.fetchone()[0]
