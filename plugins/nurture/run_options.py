"""What a marketer asks of one run, from the DAG's trigger form.

The form's fields are Airflow Params built from the program (`params`); the plan task turns
what the run was triggered with into `RunOptions` (`resolve`), refusing anything that could
send the wrong thing — an address that is not one, a step the program lacks — before
anything is planned or sent.

A run triggered by hand is a dry run unless the marketer unticks *Dry run*, so a mis-click
never mails the audience; scheduled runs send unless their conf says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nurture import addresses
from nurture.exceptions import InvalidRunOptions
from nurture.program import Program, Step

DRY_RUN, STEPS, SEND_LIMIT = "dry_run", "steps", "send_limit"
TEST_EMAIL, TEST_PHONE, TEST_CONTACT = "test_email", "test_phone", "test_contact_id"
OPTION_PARAMS = (DRY_RUN, STEPS, SEND_LIMIT, TEST_EMAIL, TEST_PHONE, TEST_CONTACT)
MANUAL = "manual"  # DagRunType.MANUAL: triggered from the UI, the REST API or `nurture run`

RUN_SECTION = "This run"
TEST_SECTION = "Send a test to yourself"
AUDIENCE_SECTION = "Narrow the audience"


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    steps: tuple[str, ...] = ()  # empty: every step
    send_limit: int | None = None  # at most this many messages; the rest wait
    test_email: str | None = None  # a test run: only here, never to a contact
    test_phone: str | None = None
    test_contact_id: str | None = None  # whose data fills the test messages
    filters: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_test(self) -> bool:
        return bool(self.test_email or self.test_phone)

    def chosen_steps(self, program: Program) -> tuple[Step, ...]:
        return tuple(s for s in program.steps if not self.steps or s.name in self.steps)

    def test_address(self, channel: str) -> str | None:
        return self.test_email if channel == "email" else self.test_phone


def resolve(program: Program, params: Mapping[str, Any], *, conf: Mapping[str, Any] | None,
            run_type: str) -> RunOptions:
    """The options of a run, validated; raises InvalidRunOptions naming what is wrong.

    A test run (a test address given) plans the audience as a dry run whatever the form
    says: it sends to the marketer only."""
    conf = conf or {}
    if run_type == MANUAL:
        dry_run = bool(params.get(DRY_RUN, True))
    else:  # scheduled, backfill, asset-triggered: send unless told otherwise
        dry_run = bool(conf.get(DRY_RUN, False))
    steps = tuple(params.get(STEPS) or ())
    unknown = [name for name in steps if name not in {s.name for s in program.steps}]
    if unknown:
        raise InvalidRunOptions(
            f"{program.name} has no step {', '.join(map(repr, unknown))}; its steps are "
            f"{', '.join(s.name for s in program.steps)}")
    limit = params.get(SEND_LIMIT)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise InvalidRunOptions(f"the send limit must be a whole number of messages, "
                                f"not {limit!r}")
    test_email = _checked(params.get(TEST_EMAIL), addresses.email_address, "an email address")
    test_phone = _checked(params.get(TEST_PHONE), addresses.phone_number,
                          "a phone number in international form, e.g. +358401234567")
    options = RunOptions(
        dry_run=dry_run or bool(test_email or test_phone), steps=steps, send_limit=limit,
        test_email=test_email, test_phone=test_phone,
        test_contact_id=(params.get(TEST_CONTACT) or "").strip() or None,
        filters={c: str(params[c]).strip() for c in program.filters if params.get(c)},
    )
    if options.is_test and not any(options.test_address(s.channel)
                                   for s in options.chosen_steps(program)):
        raise InvalidRunOptions("none of the chosen steps goes out on a channel you gave a "
                                "test address for (email steps need an email address, SMS "
                                "steps a phone number)")
    return options


def _checked(value: Any, parse, what: str) -> str | None:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return parse(text)
    except addresses.Unusable as err:
        raise InvalidRunOptions(f"{text!r} is not {what}: nothing was sent") from err


def params(program: Program) -> dict:
    """The trigger form: a Param per option (and per filter column), in sections."""
    from airflow.sdk import Param

    step_labels = {s.name: f"{s.name} ({s.channel})" for s in program.steps}
    form = {
        DRY_RUN: Param(
            True, type="boolean", title="Dry run", section=RUN_SECTION,
            description="Plan everything and show what would be sent; send nothing and record "
            "nothing. A run you trigger is a dry run until you untick this; scheduled runs "
            "send.",
        ),
        STEPS: Param(
            None, type=["null", "array"], title="Steps", section=RUN_SECTION,
            items={"type": "string", "enum": list(step_labels)},
            examples=list(step_labels), values_display=step_labels,
            description="Plan only these steps this run; empty: every step.",
        ),
        SEND_LIMIT: Param(
            None, type=["null", "integer"], minimum=1, title="Send at most", section=RUN_SECTION,
            description="Cap the messages this run sends (e.g. 50 for a careful first send). "
            "The rest keep waiting and go out with the next runs; empty: no cap.",
        ),
        TEST_EMAIL: Param(
            None, type=["null", "string"], title="Test email address", section=TEST_SECTION,
            description="Send the chosen email steps to this address only, as a test: nobody "
            "in the audience gets anything and their record is untouched.",
        ),
        TEST_PHONE: Param(
            None, type=["null", "string"], title="Test phone number", section=TEST_SECTION,
            description="Send the chosen SMS steps to this number only (international form, "
            "e.g. +358401234567), as a test.",
        ),
        TEST_CONTACT: Param(
            None, type=["null", "string"], title="Sample contact id", section=TEST_SECTION,
            description="Whose data fills the test messages; empty: the first contact each "
            "step is due for. The contact is never messaged.",
        ),
    }
    for column in program.filters:
        form[column] = Param(
            None, type=["null", "string"], title=column.replace("_", " ").capitalize(),
            section=AUDIENCE_SECTION,
            description=f"Only the audience rows with this {column}; empty: all of them.",
        )
    return form


def how_to_run(program: Program) -> str:
    """What every program's DAG doc says about the policies and the trigger form."""
    narrow = "".join(f", narrow it to one {column.replace('_', ' ')}" for column in program.filters)
    holdout = (f"{program.holdout:.0%} of the audience (the same contacts every run) gets none "
               "of its marketing messages, so their conversion can be compared; "
               if program.holdout else "")
    return f"""

**Every run:** {holdout}no contact gets more than `nurture_frequency_cap` marketing messages
a week across programs (what the cap holds back waits for room). Transactional steps and
internal alerts are exempt from both.

**Trigger it yourself** (the *Trigger* button): a run you trigger is a *dry run* — it plans
everything and shows what would go out, sending nothing — until you untick *Dry run*;
scheduled runs send. The form can also send chosen steps as a test to your own email address
or phone only, plan only some steps, cap how many messages the run sends (the rest go out
with later runs){narrow}. What a run did is on the run's *Nurture summary* tab; every
program's last runs, and a preview of any step for a contact, are on the *Nurture* page.
"""
