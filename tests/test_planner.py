"""The planner's policy: who is owed which message now, and why everyone else is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nurture.exceptions import ProgramDefinitionError
from nurture.planner import SEND, SKIP, WAIT, Decision, decide, make_plan
from nurture.program import Program, Sender, SendWindow, email, sms

ONBOARDING = Program(
    holdout=0,  # the holdout has its own tests (test_policies.py)
    name="onboarding",
    audience="onboarding_audience",
    goal="is_activated",
    steps=(
        email("welcome", after=timedelta(0), expires_after=timedelta(days=1)),
        email("setup_tips", after=timedelta(days=2), expires_after=timedelta(days=2)),
        sms("check_in", after=timedelta(days=7), expires_after=timedelta(days=2)),
    ),
    send_window=SendWindow(),
    sender=Sender(email="hello@nurture.example", name="Nurture"),
)

HELSINKI = ZoneInfo("Europe/Helsinki")
NOW = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)  # 15:00 in Helsinki: inside the SMS window
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def contact(**fields) -> dict:
    row = dict(
        contact_id="c1", enrollment_id="e1", enrolled_at=NOW - HOUR,
        email="anna@example.com", phone="+358 40 123 4567", time_zone="Europe/Helsinki",
        locale="fi-FI", first_name="Anna", has_email_consent=True, has_sms_consent=True,
        is_activated=False,
    )
    row.update(fields)
    return row


def decide_for(step_name: str, *, now: datetime = NOW, late: timedelta = HOUR,
               existing_state: str | None = None, program: Program = ONBOARDING,
               **fields) -> Decision:
    """Decide `step_name` for a contact whose step fell due `late` before `now`."""
    step = program.step(step_name)
    row = contact(enrolled_at=now - step.after - late, **fields)
    return decide(program, step, row, now=now, existing_state=existing_state)


# --- decide: each reason ---------------------------------------------------------------


def test_due_email_is_sent_to_the_normalised_address_in_the_contact_locale():
    assert decide_for("welcome", email="Anna@Example.COM") == Decision(
        SEND, "due", recipient="Anna@example.com", locale="fi-FI")


def test_due_sms_is_sent_to_the_e164_number():
    decision = decide_for("check_in")
    assert (decision.action, decision.recipient) == (SEND, "+358401234567")


def test_missing_locale_uses_the_program_default():
    assert decide_for("welcome", locale=None).locale == "en"


@pytest.mark.parametrize("state", ["planned", "sent", "failed", "unknown", "skipped"])
def test_pair_already_in_the_ledger_waits_whatever_else_is_true(state):
    # not even due and the goal reached: the ledger still decides first
    decision = decide_for("welcome", late=-HOUR, is_activated=True, existing_state=state)
    assert decision == Decision(WAIT, f"already_{state}")


def test_step_not_yet_due_waits():
    assert decide_for("setup_tips", late=-timedelta(seconds=1)) == Decision(WAIT, "not_due")


def test_step_exactly_due_is_sent():
    assert decide_for("setup_tips", late=timedelta(0)).action == SEND


def test_not_due_outranks_goal_reached():
    # an activated contact is only recorded as exited once a step falls due
    assert decide_for("setup_tips", late=-HOUR, is_activated=True).reason == "not_due"


def test_goal_reached_is_skipped():
    assert decide_for("welcome", is_activated=True) == Decision(SKIP, "goal_reached")


def test_goal_reached_outranks_expired():
    assert decide_for("welcome", late=3 * DAY, is_activated=True).reason == "goal_reached"


def test_step_found_too_late_expires():
    assert decide_for("welcome", late=DAY + timedelta(seconds=1)) == Decision(SKIP, "expired")


def test_step_exactly_at_the_expiry_boundary_is_still_sent():
    assert decide_for("welcome", late=DAY).action == SEND


def test_expired_outranks_no_consent_and_bad_addresses():
    decision = decide_for("welcome", late=2 * DAY, has_email_consent=False, email="nope")
    assert decision.reason == "expired"


@pytest.mark.parametrize("consent", [False, None])
def test_email_without_consent_is_skipped(consent):
    assert decide_for("welcome", has_email_consent=consent) == Decision(SKIP, "no_consent")


def test_consent_is_per_channel():
    assert decide_for("check_in", has_sms_consent=False, has_email_consent=True).reason == (
        "no_consent")
    assert decide_for("welcome", has_sms_consent=False).action == SEND


def test_no_consent_outranks_bad_addresses():
    assert decide_for("welcome", has_email_consent=False, email=None).reason == "no_consent"


@pytest.mark.parametrize(
    ("step", "fields", "reason"),
    [
        ("welcome", dict(email=None), "missing_email"),
        ("welcome", dict(email="anna(at)example.com"), "invalid_email"),
        ("check_in", dict(phone=None), "missing_phone"),
        ("check_in", dict(phone="040 123 4567"), "invalid_phone"),
        ("welcome", dict(locale="zz"), "unknown_locale"),
        ("check_in", dict(locale="xx-QQ"), "unknown_locale"),
        ("check_in", dict(time_zone="Mars/Olympus_Mons"), "unknown_time_zone"),
        ("check_in", dict(time_zone=None), "unknown_time_zone"),
    ],
)
def test_unusable_contact_data_is_skipped_with_its_reason(step, fields, reason):
    assert decide_for(step, **fields) == Decision(SKIP, reason)


def test_email_checks_only_the_email_address():
    assert decide_for("welcome", phone="not a phone").action == SEND
    assert decide_for("check_in", email="not an email").action == SEND


@pytest.mark.parametrize(
    ("step", "fields", "reason"),
    [
        ("welcome", dict(email="nope", locale="zz"), "invalid_email"),
        ("check_in", dict(phone="nope", time_zone="Nowhere/Town"), "invalid_phone"),
        ("check_in", dict(locale="zz", time_zone="Nowhere/Town"), "unknown_locale"),
    ],
)
def test_address_then_locale_then_time_zone(step, fields, reason):
    assert decide_for(step, **fields).reason == reason


# --- decide: conditions ---------------------------------------------------------------

CONDITIONAL = Program(
    holdout=0,  # the holdout has its own tests (test_policies.py)
    name="upsell",
    audience="upsell_audience",
    goal="has_upgraded",
    steps=(email("offer", after=timedelta(0), condition="is_customer"),),
    sender=Sender(email="hello@nurture.example", name="Nurture"),
)


@pytest.mark.parametrize(
    ("fields", "late", "expected"),
    [
        (dict(is_customer=True, has_upgraded=False), HOUR,
         Decision(SEND, "due", "anna@example.com", "fi-FI")),
        # unmet: looked at again next run while the step may still go out...
        (dict(is_customer=False, has_upgraded=False), HOUR,
         Decision(WAIT, "condition_not_yet_met")),
        (dict(has_upgraded=False), HOUR, Decision(WAIT, "condition_not_yet_met")),  # fail closed
        (dict(is_customer=False, has_upgraded=True), HOUR, Decision(SKIP, "goal_reached")),
        (dict(is_customer=True), HOUR, Decision(SKIP, "goal_reached")),  # no goal column
        # ...and closed once it expires, with the reason it never went
        (dict(is_customer=False, has_upgraded=False), 2 * DAY,
         Decision(SKIP, "condition_not_met")),
        (dict(is_customer=True, has_upgraded=False), 2 * DAY, Decision(SKIP, "expired")),
    ],
)
def test_an_unmet_condition_waits_until_the_step_expires(fields, late, expected):
    assert decide_for("offer", program=CONDITIONAL, late=late, **fields) == expected


def test_goal_column_missing_from_the_audience_does_not_send():
    row = contact()
    del row["is_activated"]
    try:
        decision = decide(ONBOARDING, ONBOARDING.step("welcome"), row, now=NOW)
    except (KeyError, ProgramDefinitionError):
        return
    assert decision.action != SEND


# --- decide: send window and time zones -----------------------------------------------


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [
        (8, 59, (WAIT, "outside_send_window")),
        (9, 0, (SEND, "due")),
        (19, 59, (SEND, "due")),
        (20, 0, (WAIT, "outside_send_window")),
        (2, 0, (WAIT, "outside_send_window")),
    ],
)
def test_sms_only_goes_out_inside_the_local_send_window(hour, minute, expected):
    local = datetime(2024, 6, 10, hour, minute, tzinfo=HELSINKI)
    decision = decide_for("check_in", now=local.astimezone(UTC))
    assert (decision.action, decision.reason) == expected


def test_email_ignores_the_send_window_and_the_time_zone():
    at_night = datetime(2024, 6, 10, 3, 0, tzinfo=HELSINKI).astimezone(UTC)
    assert decide_for("welcome", now=at_night).action == SEND
    assert decide_for("welcome", now=at_night, time_zone=None).action == SEND
    assert decide_for("welcome", now=at_night, time_zone="Mars/Olympus_Mons").action == SEND


def test_send_window_can_cover_email_too():
    program = Program(
        holdout=0,  # the holdout has its own tests (test_policies.py)
        name="onboarding", audience="onboarding_audience", steps=ONBOARDING.steps,
        sender=ONBOARDING.sender, send_window=SendWindow(channels=("email", "sms")),
    )
    at_night = datetime(2024, 6, 10, 3, 0, tzinfo=HELSINKI).astimezone(UTC)
    assert decide_for("welcome", program=program, now=at_night).reason == "outside_send_window"


def test_no_consent_outranks_the_send_window():
    at_night = datetime(2024, 6, 10, 3, 0, tzinfo=HELSINKI).astimezone(UTC)
    assert decide_for("check_in", now=at_night, has_sms_consent=False).reason == "no_consent"


def test_send_window_follows_daylight_saving_time():
    # 13:00 UTC is 09:00 in New York in summer (EDT) but 08:00 in winter (EST)
    summer = datetime(2024, 7, 1, 13, 0, tzinfo=UTC)
    winter = datetime(2024, 1, 15, 13, 0, tzinfo=UTC)
    assert decide_for("check_in", now=summer, time_zone="America/New_York").action == SEND
    assert decide_for("check_in", now=winter, time_zone="America/New_York") == Decision(
        WAIT, "outside_send_window")


def test_same_instant_differs_by_time_zone():
    early = datetime(2024, 6, 10, 6, 30, tzinfo=UTC)  # 09:30 Helsinki, 07:30 London
    assert decide_for("check_in", now=early, time_zone="Europe/Helsinki").action == SEND
    assert decide_for("check_in", now=early, time_zone="Europe/London").action == WAIT


# --- make_plan ------------------------------------------------------------------------


def audience_row(contact_id: str, *, days_ago: float = 0, **fields) -> dict:
    return contact(contact_id=contact_id, enrollment_id=f"e-{contact_id}",
                   enrolled_at=NOW - timedelta(days=days_ago, hours=1), **fields)


def plan_for(audience, existing=None, batch_size=2):
    return make_plan(ONBOARDING, audience, existing or {}, now=NOW, batch_size=batch_size)


def test_plan_counts_sends_as_planned_and_everything_else_by_reason():
    audience = [audience_row("c1"), audience_row("c2"), audience_row("c3", email="broken")]
    plan = plan_for(audience)
    assert plan.counts == {
        "welcome": {"planned": 2, "invalid_email": 1},
        "setup_tips": {"not_due": 3},
        "check_in": {"not_due": 3},
    }


def test_plan_records_sends_and_skips_but_not_waits():
    plan = plan_for([audience_row("c1"), audience_row("c2", has_email_consent=False)])
    entries = {(e.step, e.contact_id): e for e in plan.entries}
    assert set(entries) == {("welcome", "c1"), ("welcome", "c2")}

    planned, skipped = entries["welcome", "c1"], entries["welcome", "c2"]
    assert (planned.state, planned.reason, planned.batch_no) == ("planned", None, 0)
    assert (planned.program, planned.channel, planned.enrollment_id) == (
        "onboarding", "email", "e-c1")
    assert (planned.recipient, planned.locale) == ("anna@example.com", "fi-FI")
    assert planned.due_at == NOW - HOUR
    assert (skipped.state, skipped.reason, skipped.batch_no, skipped.recipient) == (
        "skipped", "no_consent", None, None)


def test_plan_batches_each_channel_separately():
    # five new contacts owe the welcome email; three week-old ones owe the check-in SMS
    # and are recorded as too late for the two emails
    audience = [audience_row(f"new{i}") for i in range(5)]
    audience += [audience_row(f"old{i}", days_ago=7) for i in range(3)]
    plan = plan_for(audience, batch_size=2)

    batch_of = {(e.step, e.contact_id): e.batch_no for e in plan.entries if e.state == "planned"}
    assert [batch_of["welcome", f"new{i}"] for i in range(5)] == [0, 0, 1, 1, 2]
    assert [batch_of["check_in", f"old{i}"] for i in range(3)] == [0, 0, 1]
    assert plan.batches == {"email": [0, 1, 2], "sms": [0, 1]}
    assert plan.counts["welcome"] == {"planned": 5, "expired": 3}
    assert plan.counts["setup_tips"] == {"not_due": 5, "expired": 3}
    assert plan.counts["check_in"] == {"not_due": 5, "planned": 3}


def test_plan_with_nothing_to_send_has_no_batches():
    plan = plan_for([audience_row("c1", is_activated=True)])
    assert plan.batches == {"email": [], "sms": []}
    assert [(e.step, e.state, e.reason) for e in plan.entries] == [
        ("welcome", "skipped", "goal_reached")]


def test_plan_leaves_pairs_already_in_the_ledger_alone():
    existing = {("welcome", "c1", "e-c1"): "sent", ("welcome", "c2", "e-other"): "sent"}
    plan = plan_for([audience_row("c1"), audience_row("c2")], existing)
    assert plan.counts["welcome"] == {"already_sent": 1, "planned": 1}
    # a new enrollment of the same contact is owed the message again
    assert [(e.step, e.contact_id, e.batch_no) for e in plan.entries] == [("welcome", "c2", 0)]
    assert plan.batches["email"] == [0]


def test_one_bad_contact_does_not_stop_the_others():
    audience = [audience_row("c1"), audience_row("c2", email="@@", locale="zz", phone=None),
                audience_row("c3")]
    plan = plan_for(audience, batch_size=10)
    states = {e.contact_id: (e.state, e.reason) for e in plan.entries}
    assert states == {"c1": ("planned", None), "c2": ("skipped", "invalid_email"),
                      "c3": ("planned", None)}
    assert plan.batches["email"] == [0]


def test_make_plan_refuses_an_audience_missing_a_column_the_program_reads():
    row = contact()
    del row["is_activated"], row["time_zone"]
    with pytest.raises(ProgramDefinitionError, match="is_activated, time_zone"):
        make_plan(ONBOARDING, [row], {}, now=NOW, batch_size=10)


def test_stranded_rows_are_decided_again_on_the_current_audience():
    from nurture.planner import resume_stranded

    welcome = ONBOARDING.step("welcome")
    plan = make_plan(ONBOARDING, [contact()], {}, now=NOW, batch_size=2)
    assert plan.batches == {"email": [0], "sms": []}  # one welcome planned in batch 0
    audience = {(f"c{n}", f"e{n}"): contact(contact_id=f"c{n}", enrollment_id=f"e{n}")
                for n in range(6)}
    audience[("c3", "e3")]["is_activated"] = True
    audience[("c4", "e4")]["has_email_consent"] = False

    def row(n, state="planned", step="welcome", due=NOW - HOUR):
        return {"ledger_id": f"L{n}", "step": step, "contact_id": f"c{n}",
                "enrollment_id": f"e{n}", "state": state, "due_at": due}

    stranded = [row(0), row(1), row(2, due=NOW - welcome.expires_after - HOUR), row(3),
                row(4), row(5, state="sending"), row(6), row(7, step="retired_step")]
    for due_row in stranded:
        audience_row = audience.get((due_row["contact_id"], due_row["enrollment_id"]))
        if audience_row:
            audience_row["enrolled_at"] = due_row["due_at"]
    resumed = resume_stranded(ONBOARDING, plan, stranded, audience, now=NOW, batch_size=2)

    assert resumed.adopt == [("L0", 1), ("L1", 1)]  # in batches after this run's own
    assert resumed.close == [
        ("L2", "skipped", "expired"),
        ("L3", "skipped", "goal_reached"),
        ("L4", "skipped", "no_consent"),
        ("L5", "unknown", "interrupted_during_send"),  # may have gone out: never re-sent
        ("L6", "skipped", "left_audience"),
        ("L7", "skipped", "step_removed"),
    ]
    assert plan.batches == {"email": [0, 1], "sms": []}
    assert plan.counts["welcome"]["planned"] == 3 and plan.counts["welcome"]["expired"] == 1


def test_a_stranded_sms_outside_the_window_keeps_waiting():
    from nurture.planner import resume_stranded

    check_in = ONBOARDING.step("check_in")
    night = contact(time_zone="Pacific/Auckland")  # 00:00 there at NOW
    night["enrolled_at"] = NOW - check_in.after
    stranded = [{"ledger_id": "L1", "step": "check_in", "contact_id": night["contact_id"],
                 "enrollment_id": night["enrollment_id"], "state": "planned",
                 "due_at": NOW - HOUR}]
    plan = make_plan(ONBOARDING, [], {}, now=NOW, batch_size=10)
    audience = {(night["contact_id"], night["enrollment_id"]): night}
    resumed = resume_stranded(ONBOARDING, plan, stranded, audience, now=NOW, batch_size=10)
    assert resumed.adopt == [] and resumed.close == []
    assert plan.counts["check_in"]["outside_send_window"] == 1


def test_an_earlier_runs_unfinished_row_is_left_to_resume_stranded():
    row = contact()
    existing = {("welcome", row["contact_id"], row["enrollment_id"]): "planned"}
    plan = make_plan(ONBOARDING, [row], existing, now=NOW, batch_size=10)
    assert "welcome" not in {e.step for e in plan.entries}
    assert plan.counts["welcome"] == {}


# --- anchors, internal alerts, once_per --------------------------------------------------

EVENTS = Program(
    holdout=0,  # the holdout has its own tests (test_policies.py)
    name="events", audience="events_audience",
    steps=(
        email("invitation", before=14 * DAY, anchor="starts_at", expires_after=2 * DAY),
        sms("reminder", before=HOUR, anchor="starts_at", condition="is_seated",
            expires_after=HOUR / 2),
        email("promoted", after=timedelta(0), anchor="promoted_at"),
        email("owner_alert", after=timedelta(0), anchor="answered_at", to="owner_email"),
    ),
    sender=Sender(email="hello@nurture.example", name="Nurture"),
)


def event_row(**fields) -> dict:
    return contact(**{"starts_at": NOW + 14 * DAY - HOUR, "promoted_at": None,
                      "answered_at": None, "is_seated": True,
                      "owner_email": "owner@example.com", **fields})


def test_a_step_before_its_anchor_falls_due_ahead_of_it():
    step = EVENTS.step("invitation")
    assert decide(EVENTS, step, event_row(), now=NOW).action == SEND
    assert decide(EVENTS, step, event_row(), now=NOW - 2 * HOUR) == Decision(WAIT, "not_due")
    reminder = EVENTS.step("reminder")
    soon = event_row(starts_at=NOW + HOUR / 2)  # due 30 min ago, expires after 30 min
    assert decide(EVENTS, reminder, soon, now=NOW).action == SEND
    assert decide(EVENTS, reminder, soon, now=NOW + HOUR / 4) == \
        Decision(SKIP, "expired")


def test_a_null_anchor_waits_for_its_event():
    step = EVENTS.step("promoted")
    assert decide(EVENTS, step, event_row(), now=NOW) == Decision(WAIT, "not_due")
    assert decide(EVENTS, step, event_row(promoted_at=NOW - HOUR), now=NOW).action == SEND


def test_an_internal_alert_ignores_the_contacts_consent_and_checks_its_own_address():
    step = EVENTS.step("owner_alert")
    answered = event_row(answered_at=NOW - HOUR, has_email_consent=False)
    assert decide(EVENTS, step, answered, now=NOW) == Decision(
        SEND, "due", recipient="owner@example.com", locale="en")
    assert decide(EVENTS, step, {**answered, "owner_email": None}, now=NOW) == Decision(
        SKIP, "missing_owner_email")


SURVEY = Program(
    holdout=0,  # the holdout has its own tests (test_policies.py)
    name="survey", audience="survey_audience", once_per=90 * DAY,
    steps=(email("survey", after=timedelta(0)),
           email("owner_alert", after=timedelta(0), anchor="answered_at", to="owner_email")),
    sender=Sender(email="hello@nurture.example", name="Nurture"),
)


def test_once_per_lets_one_trigger_through_per_contact_and_period():
    rows = [contact(contact_id="c1", enrollment_id="t1", enrolled_at=NOW - 2 * HOUR,
                    answered_at=NOW - HOUR, owner_email="owner@example.com"),
            contact(contact_id="c1", enrollment_id="t2", enrolled_at=NOW - HOUR,
                    answered_at=NOW - HOUR, owner_email="owner@example.com"),
            contact(contact_id="c2", enrollment_id="t3", answered_at=None,
                    owner_email="owner@example.com")]
    plan = make_plan(SURVEY, rows, {}, now=NOW, batch_size=10, messaged_recently={"c2"})
    surveys = {(e.contact_id, e.enrollment_id): e.reason for e in plan.entries
               if e.step == "survey"}
    assert surveys == {("c1", "t1"): None, ("c1", "t2"): "messaged_recently",
                       ("c2", "t3"): "messaged_recently"}
    alerts = [e for e in plan.entries if e.step == "owner_alert"]
    assert [e.state for e in alerts] == ["planned", "planned"]  # alerts are not capped


def test_the_goal_ends_the_contacts_messages_but_not_the_alert_it_triggers():
    leads = Program(
        name="leads", audience="leads_audience", goal="is_mql", holdout=0,
        steps=(email("content", after=timedelta(0)),
               email("handoff", after=timedelta(0), anchor="mql_at", to="owner_email")),
        sender=Sender(email="hello@nurture.example", name="Nurture"))
    mql = contact(is_mql=True, mql_at=NOW - HOUR, owner_email="rep@example.com")
    assert decide(leads, leads.step("content"), mql, now=NOW) == Decision(SKIP, "goal_reached")
    assert decide(leads, leads.step("handoff"), mql, now=NOW).action == SEND


# --- what a run is narrowed to: chosen steps, a send limit -------------------------------


def test_a_run_of_chosen_steps_decides_only_those():
    week_old = audience_row("c1", days_ago=7)
    plan = make_plan(ONBOARDING, [audience_row("c0"), week_old], {}, now=NOW, batch_size=10,
                     steps=("check_in",))
    assert set(plan.counts) == {"check_in"}
    assert {(e.step, e.contact_id) for e in plan.entries} == {("check_in", "c1")}
    assert plan.batches == {"email": [], "sms": [0]}


def test_a_send_limit_plans_that_many_and_leaves_the_rest_unrecorded_for_the_next_run():
    audience = [audience_row(f"c{n}") for n in range(5)]
    first = make_plan(ONBOARDING, audience, {}, now=NOW, batch_size=2, send_limit=2)
    assert first.counts["welcome"] == {"planned": 2, "run_limit_reached": 3}
    assert [e.contact_id for e in first.entries] == ["c0", "c1"]  # nothing else recorded
    assert first.batches == {"email": [0], "sms": []}

    recorded = {(e.step, e.contact_id, e.enrollment_id): "sent" for e in first.entries}
    second = make_plan(ONBOARDING, audience, recorded, now=NOW, batch_size=2, send_limit=2)
    third = make_plan(ONBOARDING, audience,
                      {**recorded, **{(e.step, e.contact_id, e.enrollment_id): "sent"
                                      for e in second.entries}},
                      now=NOW, batch_size=2, send_limit=2)
    assert [e.contact_id for e in second.entries + third.entries] == ["c2", "c3", "c4"]
    assert third.counts["welcome"] == {"planned": 1, "already_sent": 4}


def test_a_message_the_limit_holds_back_uses_no_room_under_the_other_policies():
    from nurture.policies import FrequencyCap

    survey = Program(name="survey", audience="survey_audience", holdout=0,
                     once_per=timedelta(days=90),
                     steps=(email("ask", after=timedelta(0), expires_after=DAY),),
                     sender=ONBOARDING.sender)
    rows = [contact(contact_id="c1", enrollment_id="e1", enrolled_at=NOW - HOUR),
            contact(contact_id="c1", enrollment_id="e2", enrolled_at=NOW - HOUR)]
    cap = FrequencyCap(limit=3)
    plan = make_plan(survey, rows, {}, now=NOW, batch_size=10, send_limit=0, cap=cap)
    assert plan.entries == []  # not "messaged_recently" for good: decided next run
    assert plan.counts["ask"] == {"run_limit_reached": 2}
    assert cap.used["c1"] == 0


def test_earlier_runs_planned_rows_are_adopted_only_up_to_the_limit():
    from nurture.planner import resume_stranded

    audience = {(f"c{n}", f"e{n}"): contact(contact_id=f"c{n}", enrollment_id=f"e{n}")
                for n in range(3)}
    stranded = [{"ledger_id": f"L{n}", "step": "welcome", "contact_id": f"c{n}",
                 "enrollment_id": f"e{n}", "state": "planned", "due_at": NOW - HOUR}
                for n in range(3)]
    plan = make_plan(ONBOARDING, [], {}, now=NOW, batch_size=10)
    resumed = resume_stranded(ONBOARDING, plan, stranded, audience, now=NOW, batch_size=10,
                              send_limit=1)
    assert resumed.adopt == [("L0", 0)] and resumed.close == []  # the others stay planned
    assert plan.counts["welcome"] == {"planned": 1, "run_limit_reached": 2}


# --- a plan fed a chunk at a time --------------------------------------------------------


def test_a_plan_fed_in_chunks_decides_exactly_as_one_fed_the_whole_audience():
    """The plan task streams the audience, looking up the ledger, the once_per rule and
    the frequency cap for each chunk's contacts only: chunks that keep each contact's rows
    together must come to the same decisions, counts, batches and upcoming messages."""
    from collections import Counter

    from nurture.planner import Planner
    from nurture.policies import FrequencyCap

    capped = Program(holdout=0.2, name="capped", audience="capped_audience",
                     once_per=90 * DAY, goal="is_activated",
                     steps=(email("welcome", after=timedelta(0), expires_after=DAY),
                            email("tips", after=DAY, expires_after=DAY),
                            sms("nudge", after=timedelta(0), expires_after=DAY,
                                kind="transactional")),
                     sender=Sender(email="hello@nurture.example", name="Nurture"))
    rows, existing = [], {}
    for n in range(40):  # 1 to 3 enrollments per contact, due at different times
        for k in range(n % 3 + 1):
            rows.append(contact(contact_id=f"c{n:02d}", enrollment_id=f"e{n}-{k}",
                                enrolled_at=NOW - timedelta(hours=5 * n + 7 * k),
                                is_activated=n % 11 == 0, has_email_consent=n % 7 != 0))
            if n % 5 == 0:
                existing[("welcome", f"c{n:02d}", f"e{n}-{k}")] = ("sent", "deferred")[n % 2]
    recent = {f"c{n:02d}" for n in range(0, 40, 6)}
    used = Counter({f"c{n:02d}": n % 3 for n in range(40)})

    whole = make_plan(capped, rows, existing, now=NOW, batch_size=4, messaged_recently=recent,
                      cap=FrequencyCap(limit=2, used=Counter(used)), send_limit=2)

    planner = Planner(capped, now=NOW, batch_size=4, send_limit=2)
    entries, upcoming, start = [], [], 0
    while start < len(rows):  # chunks of about 5 rows, never splitting a contact
        end = min(start + 5, len(rows))
        while end < len(rows) and rows[end]["contact_id"] == rows[end - 1]["contact_id"]:
            end += 1
        chunk = rows[start:end]
        ids = {row["contact_id"] for row in chunk}
        decided = planner.add(
            chunk, {key: state for key, state in existing.items() if key[1] in ids},
            messaged_recently=recent & ids,
            cap=FrequencyCap(limit=2, used=Counter({c: used[c] for c in ids})))
        entries += decided.entries
        upcoming += decided.upcoming
        start = end
    chunked = planner.finish()

    assert entries == whole.entries and upcoming == whole.upcoming
    assert chunked.counts == whole.counts and chunked.batches == whole.batches
    reasons = {e.reason for e in whole.entries} | set().union(*whole.counts.values())
    # the case covers what the chunks must carry over: each policy and the send limit
    assert {"held_out", "messaged_recently", "frequency_cap_full", "goal_reached",
            "already_sent", "run_limit_reached", "not_due"} <= reasons, reasons


def test_a_dry_run_planner_hands_back_only_what_it_would_send():
    from nurture.planner import Planner

    audience = [audience_row("c1"), audience_row("c2", has_email_consent=False),
                audience_row("c3", days_ago=7)]
    planner = Planner(ONBOARDING, now=NOW, batch_size=10, records=False)
    decided = planner.add(audience, {})
    assert {(e.step, e.contact_id, e.state) for e in decided.entries} == {
        ("welcome", "c1", "planned"), ("check_in", "c3", "planned")}
    assert planner.finish().counts == plan_for(audience, batch_size=10).counts
