"""Program definitions: valid ones compile, invalid ones fail early with a clear message."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from nurture.exceptions import ProgramDefinitionError
from nurture.program import Program, Sender, SendWindow, Step, email, sms

SENDER = Sender(email="hello@nurture.example", name="Nurture")


def make_program(**overrides) -> Program:
    options = dict(
        name="onboarding",
        audience="onboarding_audience",
        goal="is_activated",
        steps=(
            email("welcome", after=timedelta(0)),
            sms("check_in", after=timedelta(days=7), expires_after=timedelta(days=2)),
        ),
        sender=SENDER,
    )
    options.update(overrides)
    return Program(**options)


def test_valid_program_compiles():
    program = make_program(steps=[
        sms("check_in", after=timedelta(days=7)),
        email("welcome", after=timedelta(0), template="welcome_v2"),
    ])
    assert isinstance(program.steps, tuple)
    assert [s.name for s in program.steps] == ["check_in", "welcome"]
    # channels follow the fixed channel order, not the order of the steps
    assert program.channels == ("email", "sms")
    assert program.step("welcome").template == "welcome_v2"
    assert program.step("check_in").channel == "sms"


def test_channels_lists_only_channels_in_use():
    assert make_program(steps=[email("welcome", after=timedelta(0))]).channels == ("email",)


def test_template_defaults_to_step_name():
    step = email("welcome", after=timedelta(0))
    assert step.template == "welcome"
    assert step.expires_after == timedelta(days=1)


def test_unknown_step_lookup_names_the_step():
    with pytest.raises(ProgramDefinitionError, match="no step 'goodbye'"):
        make_program().step("goodbye")


@pytest.mark.parametrize("bad", ["Onboarding", "on boarding", "x; drop table", "1st", "", "a" * 64])
def test_bad_program_names_are_refused(bad):
    with pytest.raises(ProgramDefinitionError, match="lower-case letters, digits and underscores"):
        make_program(name=bad)


@pytest.mark.parametrize("field", ["audience", "goal"])
def test_bad_audience_and_goal_names_are_refused(field):
    with pytest.raises(ProgramDefinitionError, match=r"'is activated'"):
        make_program(**{field: "is activated"})


def test_name_of_63_characters_is_allowed():
    assert make_program(name="a" * 63).name == "a" * 63


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(name="Welcome"), "step 'Welcome'"),
        (dict(name="welcome; drop table x"), "step 'welcome; drop table x'"),
        (dict(template="../secrets"), "template '../secrets'"),
        (dict(condition="is-active"), "condition column 'is-active'"),
        (dict(channel="push"), "channel must be one of"),
        (dict(expires_after=timedelta(0)), "expires_after must be positive"),
        (dict(expires_after=timedelta(days=-1)), "expires_after must be positive"),
        (dict(anchor="starts at"), "anchor column 'starts at'"),
        (dict(to="owner.email"), "`to` column 'owner.email'"),
    ],
)
def test_bad_steps_are_refused(options, message):
    fields = dict(name="welcome", channel="email", after=timedelta(0)) | options
    with pytest.raises(ProgramDefinitionError, match=message):
        Step(**fields)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(), "exactly one of after= or before="),
        (dict(after=timedelta(0), before=timedelta(0)), "exactly one of after= or before="),
        (dict(after=timedelta(hours=-1)), "delays must be positive"),
        (dict(before=timedelta(hours=-1)), "delays must be positive"),
    ],
)
def test_step_helpers_take_one_positive_delay(options, message):
    with pytest.raises(ProgramDefinitionError, match=message):
        email("reminder", **options)


def test_before_an_anchor_is_a_negative_offset_from_it():
    step = sms("reminder", before=timedelta(hours=1), anchor="starts_at")
    assert (step.after, step.anchor, step.channel) == (timedelta(hours=-1), "starts_at", "sms")
    assert not step.is_internal
    assert email("alert", after=timedelta(0), to="owner_email").is_internal


def test_program_filters_and_once_per_are_checked():
    with pytest.raises(ProgramDefinitionError, match="filter column 'webinar id'"):
        make_program(filters=("webinar id",))
    with pytest.raises(ProgramDefinitionError, match="once_per must be positive"):
        make_program(once_per=timedelta(0))


def test_step_at_enrollment_with_a_condition_is_valid():
    step = Step(name="welcome", channel="email", after=timedelta(0), condition="is_customer")
    assert step.condition == "is_customer"


def test_duplicate_step_names_are_refused():
    with pytest.raises(ProgramDefinitionError, match="onboarding has duplicate step names"):
        make_program(steps=(email("welcome", after=timedelta(0)),
                            sms("welcome", after=timedelta(days=1))))


def test_program_without_steps_is_refused():
    with pytest.raises(ProgramDefinitionError, match="onboarding has no steps"):
        make_program(steps=())


@pytest.mark.parametrize(("start", "end"), [(time(20), time(9)), (time(9), time(9))])
def test_send_window_must_start_before_it_ends(start, end):
    with pytest.raises(ProgramDefinitionError, match="must precede"):
        SendWindow(start=start, end=end)


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        (time(8, 59, 59), False),
        (time(9), True),
        (time(14, 30), True),
        (time(19, 59, 59), True),
        (time(20), False),
        (time(23, 30), False),
    ],
)
def test_send_window_includes_start_and_excludes_end(local, inside):
    assert SendWindow().contains(local) is inside


def test_send_window_applies_to_sms_by_default():
    window = SendWindow()
    assert window.applies_to("sms")
    assert not window.applies_to("email")
    assert SendWindow(channels=("email", "sms")).applies_to("email")
