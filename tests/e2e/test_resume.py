"""A run whose sends fail leaves its messages planned, fails loudly, and the next run
sends them: nothing is lost and nothing goes twice."""

from __future__ import annotations

import pytest

from nurture import runner, seed, warehouse
from nurture.emulator import OutboxStore

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fresh_program(fresh_onboarding):
    with warehouse.connect() as conn:
        seed.load(conn, seed.build())


def states() -> dict[str, int]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select state, count(*) from nurture.message_ledger"
                    " where program = 'onboarding' and state <> 'skipped' group by state")
        return dict(cur.fetchall())


def test_failed_sends_are_resumed_by_the_next_run(fresh_program, tmp_path, monkeypatch):
    with monkeypatch.context() as broken:
        broken.setenv("AIRFLOW_CONN_SENDGRID_DEFAULT", '{"conn_type": "sendgrid"}')  # no key
        broken.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", '{"conn_type": "twilio"}')
        failed = runner.run_program("onboarding")
    assert failed.state.endswith("failed")
    planned = failed.summary["planned"]
    assert planned > 0
    assert sum(s["not_sent"].get("not_dispatched", 0) for s in failed.summary["steps"]) == \
        planned
    assert states() == {"planned": planned}

    outbox = tmp_path / "outbox.sqlite"
    with runner.emulated_providers(outbox):
        resumed = runner.run_program("onboarding", skip_tasks=r"dbt.*")
    assert resumed.state.endswith("success")
    assert resumed.summary["sent"] == planned - 4  # the four template errors fail for good
    assert states() == {"sent": planned - 4, "failed": 4}
    messages = OutboxStore(outbox).messages()
    assert len(messages) == len({(m["recipient"], m["text"]) for m in messages}) == planned - 4
