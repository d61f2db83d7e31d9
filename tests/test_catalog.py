"""The program catalog finds every program in dags/ by its definition."""

from __future__ import annotations

import pytest

from nurture import catalog
from nurture.exceptions import NurtureError


def test_every_dag_file_defines_its_program():
    found = catalog.programs()
    assert set(found) == {"onboarding", "webinar", "satisfaction_survey", "nurture"}
    assert found["onboarding"].audience == "onboarding_audience"
    assert [step.name for step in catalog.program("onboarding").steps] == [
        "welcome", "setup_tips", "check_in"]


def test_an_unknown_program_is_named_with_the_known_ones():
    with pytest.raises(NurtureError, match="no program 'winback'; known: nurture, onboarding"):
        catalog.program("winback")


def test_a_dag_file_is_run_again_only_when_it_changes():
    first = catalog.programs()
    assert catalog.programs()["onboarding"] is first["onboarding"]
