"""The trigger form's options through the real onboarding DAG, run by `dag.test()` as
`nurture run` runs it: a test send reaches the marketer only and records nothing for the
audience; a bad test address fails the run before anything is sent; a send limit sends that
many, and the next run decides the rest.

The first test's run builds the audience with dbt; the later ones reuse it (dbt skipped).
"""

from __future__ import annotations

import pytest

from nurture import runner, seed, warehouse
from nurture.emulator import OutboxStore

pytestmark = pytest.mark.e2e
SKIP_DBT = r"dbt.*"


@pytest.fixture(scope="module")
def demo(fresh_onboarding):
    with warehouse.connect() as conn:
        seed.load(conn, seed.build())


@pytest.fixture
def outbox(demo, tmp_path):
    path = tmp_path / "outbox.sqlite"
    with runner.emulated_providers(path, events=False):
        yield OutboxStore(path)


def ledger_rows(step: str = "welcome") -> dict[str, int]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select state, count(*) from nurture.message_ledger"
                    " where program = 'onboarding' and step = %s group by state", (step,))
        return dict(cur.fetchall())


def test_a_test_send_reaches_the_marketer_only(outbox):
    result = runner.run_program("onboarding", options={
        "test_email": "marketer@example.com", "test_phone": "+358 50 123 4567",
        "steps": ["welcome", "check_in"]})

    assert result.state.endswith("success")
    assert [(t["step"], t["recipient"], t["state"]) for t in result.summary["tests"]] == [
        ("welcome", "marketer@example.com", "sent"), ("check_in", "+358501234567", "sent")]
    messages = outbox.messages()
    assert sorted(m["recipient"] for m in messages) == ["+358501234567",
                                                        "marketer@example.com"]
    assert all((m["subject"] or m["text"]).startswith("[TEST] ") for m in messages)
    # The audience was planned as a dry run (the summary shows it), and nothing recorded.
    assert result.summary["dry_run"] is True and result.summary["planned"] > 0
    assert [s["step"] for s in result.summary["steps"]] == ["welcome", "check_in"]
    assert ledger_rows() == {} and ledger_rows("check_in") == {}


def test_a_bad_test_address_fails_the_run_and_sends_nothing(outbox):
    result = runner.run_program("onboarding", skip_tasks=SKIP_DBT,
                                options={"test_email": "marketer@"})
    assert result.state.endswith("failed")
    assert outbox.messages() == [] and ledger_rows() == {}


def test_a_send_limit_sends_that_many_and_the_next_run_decides_the_rest(outbox):
    first = runner.run_program("onboarding", skip_tasks=SKIP_DBT,
                               options={"send_limit": 10, "steps": ["welcome"]})
    assert first.state.endswith("success")
    (welcome,) = first.summary["steps"]
    assert welcome["planned"] == 10
    held_back = welcome["waiting"]["run_limit_reached"]
    assert held_back > 0
    assert len(outbox.messages()) == first.summary["sent"] <= 10  # some may fail to render
    decided = sum(ledger_rows().values())

    second = runner.run_program("onboarding", skip_tasks=SKIP_DBT, options={"steps": ["welcome"]})
    assert second.state.endswith("success")
    (welcome,) = second.summary["steps"]
    assert "run_limit_reached" not in welcome["waiting"]
    # Every message the limit held back was decided now: sent, or held out, or capped.
    assert sum(ledger_rows().values()) - decided == held_back
    assert len(outbox.messages()) == first.summary["sent"] + second.summary["sent"]
