"""A run whose sends fail leaves its messages planned, fails loudly, and the next run
sends them: nothing is lost and nothing goes twice."""

from __future__ import annotations

import pytest

from nurture import runner, seed, warehouse
from nurture.emulator import OutboxStore
from nurture.policies import in_holdout

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fresh_program(fresh_onboarding):
    with warehouse.connect() as conn:
        seed.load(conn, seed.build())


def template_errors() -> int:
    """The demo contacts without a first name (the welcome needs one), outside the holdout."""
    return sum(scenario.name == "missing_first_name" and not in_holdout("onboarding", cid, 0.05)
               for cid, scenario in seed.build().scenario_of.items())


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
    errors = template_errors()  # these fail for good
    assert errors > 0
    assert resumed.summary["sent"] == planned - errors
    assert states() == {"sent": planned - errors, "failed": errors}
    messages = OutboxStore(outbox).messages()
    assert len(messages) == len({(m["recipient"], m["text"]) for m in messages}) == \
        planned - errors
