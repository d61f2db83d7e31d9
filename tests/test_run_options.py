"""The trigger form's options: a run triggered by hand sends nothing unless the marketer
says so, scheduled runs send, and anything that could reach the wrong person is refused
before a run plans or sends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nurture.exceptions import InvalidRunOptions
from nurture.program import Program, Sender, email, sms
from nurture.run_options import RunOptions, params, resolve

PROGRAM = Program(
    name="onboarding", audience="onboarding_audience",
    steps=(email("welcome", after=timedelta(0)), sms("check_in", after=timedelta(days=7))),
    sender=Sender("hello@nurture.example", "Nurture"), filters=("webinar_id",),
)


def form(**values) -> dict:
    """The params as the trigger form submits them: every field, defaults where untouched."""
    return {name: param.value for name, param in params(PROGRAM).items()} | values


def test_a_manual_trigger_is_a_dry_run_unless_the_marketer_unticks_it():
    assert resolve(PROGRAM, form(), conf={}, run_type="manual").dry_run is True
    assert resolve(PROGRAM, form(dry_run=False), conf={"dry_run": False},
                   run_type="manual").dry_run is False


def test_a_scheduled_run_sends_although_the_forms_default_is_a_dry_run():
    assert resolve(PROGRAM, form(), conf={}, run_type="scheduled").dry_run is False
    assert resolve(PROGRAM, form(), conf=None, run_type="asset_triggered").dry_run is False
    # a backfill asked for as a dry run is one
    assert resolve(PROGRAM, form(), conf={"dry_run": True}, run_type="backfill").dry_run


def test_steps_limit_and_filters_come_through():
    options = resolve(PROGRAM, form(steps=["check_in"], send_limit=25, webinar_id=" W003 "),
                      conf={}, run_type="manual")
    assert options.steps == ("check_in",)
    assert [s.name for s in options.chosen_steps(PROGRAM)] == ["check_in"]
    assert options.send_limit == 25
    assert options.filters == {"webinar_id": "W003"}
    assert RunOptions().chosen_steps(PROGRAM) == PROGRAM.steps  # no choice: every step


def test_an_unknown_step_is_refused_naming_the_real_ones():
    with pytest.raises(InvalidRunOptions, match="no step 'welcom'.*welcome, check_in"):
        resolve(PROGRAM, form(steps=["welcom"]), conf={}, run_type="manual")


@pytest.mark.parametrize("limit", [0, -5, True, "ten", 2.5])
def test_a_send_limit_must_be_a_positive_whole_number(limit):
    with pytest.raises(InvalidRunOptions, match="send limit"):
        resolve(PROGRAM, form(send_limit=limit), conf={}, run_type="manual")


def test_a_test_run_sends_to_the_marketer_only_and_plans_the_audience_as_a_dry_run():
    options = resolve(PROGRAM, form(dry_run=False, test_email=" Me@Example.COM ",
                                    test_phone="+358 40 123 4567", test_contact_id="C001"),
                      conf={"dry_run": False}, run_type="manual")
    assert options.is_test and options.dry_run
    assert options.test_address("email") == "Me@example.com"
    assert options.test_address("sms") == "+358401234567"
    assert options.test_contact_id == "C001"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("test_email", "me@", "not an email address"),
    ("test_email", "me at example.com", "not an email address"),
    ("test_phone", "12345", "not a phone number"),
    ("test_phone", "+358 40 12", "not a phone number"),
])
def test_a_bad_test_address_is_refused_before_anything_is_sent(field, value, message):
    with pytest.raises(InvalidRunOptions, match=f"{message}.*nothing was sent"):
        resolve(PROGRAM, form(**{field: value}), conf={}, run_type="manual")


def test_a_test_address_for_none_of_the_chosen_steps_channels_is_refused():
    with pytest.raises(InvalidRunOptions, match="SMS steps a phone number"):
        resolve(PROGRAM, form(steps=["check_in"], test_email="me@example.com"), conf={},
                run_type="manual")
    # with every step chosen, the email steps go and the SMS one is left out
    assert resolve(PROGRAM, form(test_email="me@example.com"), conf={},
                   run_type="manual").is_test


def test_the_form_has_a_titled_described_field_in_a_section_for_every_option():
    fields = params(PROGRAM)
    assert list(fields) == ["dry_run", "steps", "send_limit", "test_email", "test_phone",
                            "test_contact_id", "webinar_id"]
    for name, param in fields.items():
        assert param.schema["title"] and param.description and param.schema["section"], name
    assert fields["steps"].schema["items"]["enum"] == ["welcome", "check_in"]
    assert fields["steps"].schema["values_display"]["check_in"] == "check_in (sms)"
