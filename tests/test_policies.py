"""Policies every program obeys: the holdout group and the frequency cap with priority."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from nurture.exceptions import ProgramDefinitionError
from nurture.planner import make_plan
from nurture.policies import FrequencyCap, in_holdout
from nurture.program import Program, Sender, email

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
SENDER = Sender("hello@nurture.example", "Nurture")


def program(name="news", **options) -> Program:
    steps = options.pop("steps", (email("news", after=timedelta(0)),))
    return Program(name=name, audience=f"{name}_audience", steps=steps, sender=SENDER,
                   **options)


def row(contact_id: str, **fields) -> dict:
    return dict(contact_id=contact_id, enrollment_id=f"e-{contact_id}",
                enrolled_at=NOW - timedelta(hours=1), email=f"{contact_id}@example.com",
                locale="en", has_email_consent=True) | fields


def outcomes(plan) -> dict[str, str]:
    return {e.contact_id: e.reason or e.state for e in plan.entries}


# --- holdout -------------------------------------------------------------------------------


def test_holdout_is_a_stable_share_per_program():
    contacts = [f"C{n:05d}" for n in range(20_000)]
    held = {c for c in contacts if in_holdout("onboarding", c, 0.05)}
    assert 0.045 < len(held) / len(contacts) < 0.055
    assert held == {c for c in contacts if in_holdout("onboarding", c, 0.05)}  # every run
    other = {c for c in contacts if in_holdout("webinar", c, 0.05)}
    assert len(held & other) < len(held) * 0.2  # each program draws its own group
    assert not any(in_holdout("onboarding", c, 0) for c in contacts)


def test_the_holdout_gets_no_marketing_and_is_recorded_as_held_out():
    news = program(holdout=0.5)
    audience = [row(f"C{n}") for n in range(40)]
    plan = make_plan(news, audience, {}, now=NOW, batch_size=100)
    held = {c for c, reason in outcomes(plan).items() if reason == "held_out"}
    assert held == {r["contact_id"] for r in audience if in_holdout("news", r["contact_id"], 0.5)}
    assert 0 < len(held) < 40
    assert plan.counts["news"]["held_out"] == len(held)


def test_transactional_steps_and_internal_alerts_ignore_the_holdout():
    events = program(name="events", holdout=0.99, steps=(
        email("confirmation", after=timedelta(0), kind="transactional"),
        email("alert", after=timedelta(0), to="owner_email")))
    plan = make_plan(events, [row("C1", owner_email="owner@example.com")], {}, now=NOW,
                     batch_size=10)
    assert {e.step: e.state for e in plan.entries} == {"confirmation": "planned",
                                                       "alert": "planned"}
    assert {e.step: e.is_marketing for e in plan.entries} == {"confirmation": False,
                                                              "alert": False}


def test_bad_policy_settings_are_refused():
    with pytest.raises(ProgramDefinitionError, match="holdout must be a share"):
        program(holdout=1.0)
    with pytest.raises(ProgramDefinitionError, match="when_capped"):
        program(when_capped="queue")
    with pytest.raises(ProgramDefinitionError, match="kind must be one of"):
        email("x", after=timedelta(0), kind="promo")


# --- frequency cap ---------------------------------------------------------------------------


def test_the_cap_counts_other_programs_messages_and_this_plans_own():
    news = program(holdout=0, steps=(email("a", after=timedelta(0)),
                                     email("b", after=timedelta(0))))
    cap = FrequencyCap(limit=2, used=Counter({"C1": 1}))
    plan = make_plan(news, [row("C1"), row("C2")], {}, now=NOW, batch_size=10, cap=cap)
    states = {(e.contact_id, e.step): (e.state, e.reason) for e in plan.entries}
    assert states == {("C1", "a"): ("planned", None), ("C2", "a"): ("planned", None),
                      ("C2", "b"): ("planned", None),
                      ("C1", "b"): ("deferred", "frequency_cap_full")}  # waits, on record
    assert plan.counts["b"]["frequency_cap_full"] == 1
    assert ("b", "C1", "e-C1", NOW - timedelta(hours=1)) in plan.upcoming


def test_a_deferred_message_is_decided_again_on_each_run():
    news = program(holdout=0)
    deferred = {("news", "C1", "e-C1"): "deferred"}
    full = FrequencyCap(limit=1, used=Counter({"C1": 1}))
    still = make_plan(news, [row("C1")], deferred, now=NOW, batch_size=10, cap=full)
    assert still.entries == []  # already on record as deferred
    assert still.counts["news"]["frequency_cap_full"] == 1
    room = make_plan(news, [row("C1")], deferred, now=NOW, batch_size=10,
                     cap=FrequencyCap(limit=1))
    assert [(e.state, e.batch_no) for e in room.entries] == [("planned", 0)]
    assert room.batches == {"email": [0]}
    late = make_plan(news, [row("C1")], deferred, now=NOW + 8 * DAY, batch_size=10, cap=full)
    assert outcomes(late) == {"C1": "expired"}


def test_a_program_that_drops_capped_messages_records_why():
    news = program(holdout=0, when_capped="drop")
    plan = make_plan(news, [row("C1")], {}, now=NOW, batch_size=10,
                     cap=FrequencyCap(limit=1, used=Counter({"C1": 1})))
    assert outcomes(plan) == {"C1": "frequency_capped"}


def test_a_lower_priority_program_leaves_room_for_a_higher_one():
    low = program(name="newsletter", holdout=0, priority=10)
    reserved = FrequencyCap(limit=1, reserved=Counter({"C1": 1}))
    plan = make_plan(low, [row("C1"), row("C2")], {}, now=NOW, batch_size=10, cap=reserved)
    assert {e.contact_id: e.state for e in plan.entries} == {"C1": "deferred", "C2": "planned"}
    assert plan.counts["news"]["frequency_cap_full"] == 1


def test_transactional_messages_are_exempt_from_the_cap():
    events = program(name="events", holdout=0, steps=(
        email("reminder", after=timedelta(0), kind="transactional"),))
    plan = make_plan(events, [row("C1")], {}, now=NOW, batch_size=10,
                     cap=FrequencyCap(limit=0))
    assert outcomes(plan) == {"C1": "planned"}


def test_upcoming_lists_marketing_messages_due_within_a_day_only():
    news = program(holdout=0, steps=(email("soon", after=DAY + timedelta(hours=12)),
                                     email("later", after=3 * DAY)))
    plan = make_plan(news, [row("C1", enrolled_at=NOW - DAY)], {}, now=NOW, batch_size=10)
    assert [(step, due) for step, *_, due in plan.upcoming] == [
        ("soon", NOW + timedelta(hours=12))]
