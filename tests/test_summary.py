"""A run's summary: per step, what went out and what did not, and why."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from nurture import summary
from nurture.program import Program, Sender, email, sms

ONBOARDING = Program(
    name="onboarding",
    audience="onboarding_audience",
    goal="is_activated",
    steps=(
        email("welcome", after=timedelta(0)),
        email("setup_tips", after=timedelta(days=2)),
        sms("check_in", after=timedelta(days=7)),
    ),
    sender=Sender(email="hello@nurture.example", name="Nurture"),
)

# the planner's counts; steps deliberately out of program order
PLAN_COUNTS = {
    "check_in": {"not_due": 4, "outside_send_window": 2, "unknown_time_zone": 1},
    "welcome": {"planned": 8, "no_consent": 1, "already_sent": 5},
}

# the ledger's (step, state, reason, n) for the run; reasons are coalesced to ''
OUTCOMES = [
    ("welcome", "sent", "", 3),
    ("welcome", "skipped", "no_consent", 1),  # already counted from the plan
    ("welcome", "failed", "template_error: welcome/en/subject.txt: 'first_name' is undefined", 1),
    ("welcome", "failed", "template_error: welcome/fi/body.txt: 'x' is undefined", 1),
    ("welcome", "unknown", "provider_outcome_unknown: ReadTimeout", 1),
    ("welcome", "planned", "", 1),
    ("welcome", "sending", "", 1),
]

GUARD = {"success": True, "row_count": 120}


def build(plan_counts=PLAN_COUNTS, outcomes=OUTCOMES, *, dry_run=False, guard=GUARD):
    return summary.build(ONBOARDING, plan_counts, outcomes, dry_run=dry_run, guard=guard)


def step_of(made: dict, name: str) -> dict:
    return next(entry for entry in made["steps"] if entry["step"] == name)


def test_steps_are_reported_in_program_order_with_their_channels():
    made = build()
    assert [(e["step"], e["channel"]) for e in made["steps"]] == [
        ("welcome", "email"), ("setup_tips", "email"), ("check_in", "sms")]
    assert step_of(made, "setup_tips") == {
        "step": "setup_tips", "channel": "email", "planned": 0, "sent": 0,
        "not_sent": {}, "waiting": {}}


def test_sent_comes_from_the_ledger_and_failures_are_grouped_by_category():
    welcome = step_of(build(), "welcome")
    assert (welcome["planned"], welcome["sent"]) == (8, 3)
    assert welcome["not_sent"] == {
        "already_sent": 5,
        "no_consent": 1,  # once, from the plan, although the ledger has the skipped row too
        "not_dispatched": 2,  # planned or sending rows whose send task never finished
        "provider_outcome_unknown": 1,
        "template_error": 2,
    }
    assert list(welcome["not_sent"]) == sorted(welcome["not_sent"])
    assert welcome["waiting"] == {}


def test_waiting_is_kept_apart_from_not_sent():
    check_in = step_of(build(), "check_in")
    assert check_in["waiting"] == {"not_due": 4, "outside_send_window": 2}
    assert check_in["not_sent"] == {"unknown_time_zone": 1}


@pytest.mark.parametrize("state", ["failed", "unknown"])
def test_outcome_without_a_reason_is_counted_under_its_state(state):
    welcome = step_of(build({}, [("welcome", state, "", 2)]), "welcome")
    assert welcome["not_sent"] == {state: 2}


def test_totals_run_flags_and_guard():
    made = build(dry_run=True)
    assert (made["program"], made["dry_run"], made["sent"], made["planned"]) == (
        "onboarding", True, 3, 8)
    assert made["guard"] == GUARD
    assert build(guard=None)["guard"] == {}


def test_summary_is_plain_json_data():
    made = build()
    assert json.loads(json.dumps(made)) == made


# --- format_table ---------------------------------------------------------------------


def lines_of(made: dict) -> list[str]:
    return summary.format_table(made).splitlines()


def test_table_of_a_real_run():
    lines = lines_of(build())
    assert lines[0] == "onboarding"
    assert lines[1].split() == ["step", "channel", "sent", "not", "sent", "(reason:", "count)"]
    welcome = lines[2].split(None, 3)
    assert welcome[:3] == ["welcome", "email", "3"]
    assert welcome[3] == ("already_sent: 5, no_consent: 1, not_dispatched: 2, "
                          "provider_outcome_unknown: 1, template_error: 2")
    assert lines[3].split() == ["setup_tips", "email", "0", "-"]
    assert lines[4].split() == ["check_in", "sms", "0", "unknown_time_zone:", "1"]
    assert lines[5].strip() == "waiting: not_due: 4, outside_send_window: 2"
    assert lines[6] == "guard: passed on 120 audience rows"
    assert len(lines) == 7


def test_table_of_a_dry_run_shows_what_would_be_sent():
    lines = lines_of(build(dry_run=True))
    assert lines[0] == "onboarding (dry run: nothing sent)"
    assert "would send" in lines[1]
    assert lines[2].split()[:3] == ["welcome", "email", "8"]  # planned, not sent


def test_table_of_a_run_where_nothing_was_due():
    table = summary.format_table(build({"welcome": {"already_sent": 9}}, []))
    assert "Nothing new to send" in table


@pytest.mark.parametrize(
    ("plan_counts", "outcomes"),
    [
        ({"welcome": {"planned": 1}}, [("welcome", "failed", "provider_rejected: 400", 1)]),
        ({"welcome": {"planned": 1}}, [("welcome", "sent", "", 1)]),
    ],
)
def test_nothing_new_line_only_when_nothing_was_planned_or_sent(plan_counts, outcomes):
    assert "Nothing new to send" not in summary.format_table(build(plan_counts, outcomes))


def test_nothing_new_line_in_a_dry_run_with_nothing_planned():
    table = summary.format_table(build({"welcome": {"already_sent": 9}}, [], dry_run=True))
    assert "Nothing new to send" in table


@pytest.mark.parametrize(
    ("guard", "line"),
    [
        ({"success": True, "row_count": 120}, "guard: passed on 120 audience rows"),
        ({"success": False, "row_count": 3}, "guard: FAILED on 3 audience rows"),
    ],
)
def test_guard_line(guard, line):
    assert lines_of(build(guard=guard))[-1] == line


def test_no_guard_line_without_a_guard_result():
    assert "guard:" not in summary.format_table(build(guard=None))


def test_a_narrowed_test_run_reports_its_steps_its_tests_and_the_holdout():
    from nurture.run_options import RunOptions

    options = RunOptions(dry_run=True, steps=("welcome",), send_limit=5,
                         test_email="me@example.com")
    tests = [{"step": "welcome", "channel": "email", "recipient": "me@example.com",
              "sample_contact_id": "C1", "state": "sent", "reason": None}]
    made = summary.build(ONBOARDING, {"welcome": {"planned": 5, "held_out": 2,
                                                  "run_limit_reached": 3}},
                         [("check_in", "sent", "", 4)], dry_run=True, guard=GUARD,
                         options=options, tests=tests)
    assert [entry["step"] for entry in made["steps"]] == ["welcome"]  # the chosen step only
    assert step_of(made, "welcome")["waiting"] == {"run_limit_reached": 3}
    assert made["holdout"] == {"share": 0.05, "held_out": 2}
    assert made["options"] == {"steps": ["welcome"], "send_limit": 5, "filters": {}}
    table = summary.format_table(made)
    assert table.startswith("onboarding (test run: only the test address got anything)")
    assert "holdout (5% of the audience): 2 message(s) held out" in table
    assert "test: welcome to me@example.com (as contact C1): sent" in table
