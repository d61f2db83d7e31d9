"""The program definition: what an analytics engineer writes to make a lifecycle program.

A `Program` is plain data — steps, delays, channels, templates, conditions, a goal, a send
window — checked when it is built, so a typo fails at DAG parse time with a clear message
rather than mid-send. `nurture.dag_factory.build_dag` compiles it into an Airflow DAG.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any, Literal

from nurture.exceptions import ProgramDefinitionError

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")
# Marketing messages count against the frequency cap and are kept from the holdout group;
# transactional ones (a confirmation, a reminder the contact asked for) are exempt.
Kind = Literal["marketing", "transactional"]
KINDS: tuple[Kind, ...] = ("marketing", "transactional")

# Names reach SQL, file paths and Airflow ids: allow only plain identifiers.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# PostgreSQL's reserved and type/function-name keywords (`select word from pg_get_keywords()
# where catcode in ('R', 'T')`, PostgreSQL 16). Unquoted, such a name is not a column: a
# filter or anchor named `user` would compare or sort by the session's user, silently.
_KEYWORDS = """
    all analyse analyze and any array as asc asymmetric both case cast check collate column
    constraint create current_catalog current_date current_role current_time
    current_timestamp current_user default deferrable desc distinct do else end except false
    fetch for foreign from grant group having in initially intersect into lateral leading
    limit localtime localtimestamp not null offset on only or order placing primary
    references returning select session_user some symmetric system_user table then to
    trailing true union unique user using variadic when where window with
    authorization binary collation concurrently cross current_schema freeze full ilike inner
    is isnull join left like natural notnull outer overlaps right similar tablesample verbose
"""
SQL_KEYWORDS = frozenset(_KEYWORDS.split())


def check_name(kind: str, value: str) -> str:
    """`value` if it is a plain identifier SQL reads as a name; ProgramDefinitionError if not."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ProgramDefinitionError(
            f"{kind} {value!r} must be lower-case letters, digits and underscores, "
            "starting with a letter (at most 63 characters)"
        )
    if value in SQL_KEYWORDS:
        raise ProgramDefinitionError(
            f"{kind} {value!r} is an SQL keyword: choose another name (e.g. {value}_at, "
            f"is_{value})"
        )
    return value


@dataclass(frozen=True)
class SendWindow:
    """Local hours in the recipient's time zone when a message may arrive."""

    start: time = time(9)
    end: time = time(20)
    channels: tuple[Channel, ...] = ("sms",)

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ProgramDefinitionError(f"send window start {self.start} must precede {self.end}")

    def applies_to(self, channel: Channel) -> bool:
        return channel in self.channels

    def contains(self, local: time) -> bool:
        return self.start <= local < self.end


@dataclass(frozen=True)
class Sender:
    email: str
    name: str


@dataclass(frozen=True)
class Step:
    """One message of a program, sent `after` its anchor on one channel.

    `anchor` names the audience's timestamp column the delay counts from — enrollment by
    default, or any event: a webinar's start (with a negative delay: `before=`), a
    registration, a promotion from the waitlist. A null anchor means the event has not
    happened: the step waits. `expires_after` is how late it may still go out: a welcome
    found a week late (after an outage or a bulk import) is recorded as expired, not sent.
    `condition` names a boolean audience column that must be true when the step is due.
    `to` names an audience column holding another recipient's address — an internal alert
    to the contact's account owner — for which the contact's consent and send window do not
    apply. With `survey_link`, templates get `survey_url` (and `survey_score_urls`, 0–10),
    on a signed token naming this message.
    """

    name: str
    channel: Channel
    after: timedelta
    expires_after: timedelta = timedelta(days=1)
    template: str = ""
    condition: str | None = None
    anchor: str = "enrolled_at"
    to: str | None = None
    survey_link: bool = False  # templates get survey_url: a signed link to this survey
    kind: Kind = "marketing"

    def __post_init__(self) -> None:
        check_name("step", self.name)
        if self.channel not in CHANNELS:
            raise ProgramDefinitionError(f"step {self.name}: channel must be one of {CHANNELS}")
        if self.expires_after <= timedelta(0):
            raise ProgramDefinitionError(f"step {self.name}: expires_after must be positive")
        if not self.template:
            object.__setattr__(self, "template", self.name)
        check_name("template", self.template)
        check_name("anchor column", self.anchor)
        if self.kind not in KINDS:
            raise ProgramDefinitionError(f"step {self.name}: kind must be one of {KINDS}")
        for kind, column in (("condition column", self.condition), ("`to` column", self.to)):
            if column is not None:
                check_name(kind, column)

    @property
    def is_internal(self) -> bool:
        """Sent to someone other than the contact (see `to`)."""
        return self.to is not None

    @property
    def is_marketing(self) -> bool:
        """Counted by the frequency cap and withheld from the holdout group."""
        return self.kind == "marketing" and not self.is_internal


def _step(name: str, channel: Channel, after: timedelta | None, before: timedelta | None,
          options) -> Step:
    if (after is None) == (before is None):
        raise ProgramDefinitionError(f"step {name}: give exactly one of after= or before=")
    if (after if after is not None else before) < timedelta(0):
        raise ProgramDefinitionError(f"step {name}: delays must be positive (use before=)")
    offset = after if after is not None else -before
    return Step(name=name, channel=channel, after=offset, **options)


def email(name: str, *, after: timedelta | None = None, before: timedelta | None = None,
          **options) -> Step:
    return _step(name, "email", after, before, options)


def sms(name: str, *, after: timedelta | None = None, before: timedelta | None = None,
        **options) -> Step:
    return _step(name, "sms", after, before, options)


@dataclass(frozen=True)
class Program:
    """A lifecycle program; `name` is its DAG id and its key in the ledger."""

    name: str
    audience: str  # the dbt model (in the marts schema) the program reads
    steps: tuple[Step, ...]
    sender: Sender
    goal: str | None = None  # boolean audience column: true means the contact is done
    send_window: SendWindow = field(default_factory=SendWindow)
    schedule: str = "@hourly"
    default_locale: str = "en"
    owner: str = "analytics"
    tags: tuple[str, ...] = ()
    doc_md: str = ""
    # At most one message to a contact per this period, whatever enrolled them (internal
    # alerts aside): a survey every 90 days however many milestones the contact passes.
    once_per: timedelta | None = None
    # Audience columns a run can be narrowed to from the trigger form (e.g. one webinar).
    filters: tuple[str, ...] = ()
    # Run in the plan task, under the program's lock, before the audience is read:
    # `hook(conn, now=..., filters=...)` updates program state the audience reads (seats of
    # a webinar). In a dry run its changes are rolled back.
    before_plan: tuple[Callable[..., Any], ...] = ()
    # Share of the audience kept out of every marketing message, to measure the program
    # against (stable per contact: a hash of program and contact).
    holdout: float = 0.05
    # Who wins when the frequency cap allows one more marketing message and several
    # programs want to send it: the higher priority. Lower-priority programs leave room
    # for what higher-priority ones will send within a day.
    priority: int = 50
    # A message the frequency cap stops: "wait" for room (until it expires) or "drop" it.
    when_capped: Literal["wait", "drop"] = "wait"

    def __post_init__(self) -> None:
        check_name("program", self.name)
        check_name("audience model", self.audience)
        if self.goal is not None:
            check_name("goal column", self.goal)
        for column in self.filters:
            check_name("filter column", column)
        object.__setattr__(self, "filters", tuple(self.filters))
        object.__setattr__(self, "before_plan", tuple(self.before_plan))
        if self.once_per is not None and self.once_per <= timedelta(0):
            raise ProgramDefinitionError(f"program {self.name}: once_per must be positive")
        if not 0 <= self.holdout < 1:
            raise ProgramDefinitionError(f"program {self.name}: holdout must be a share in "
                                         "[0, 1)")
        if self.when_capped not in ("wait", "drop"):
            raise ProgramDefinitionError(f"program {self.name}: when_capped must be 'wait' "
                                         "or 'drop'")
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps:
            raise ProgramDefinitionError(f"program {self.name} has no steps")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ProgramDefinitionError(f"program {self.name} has duplicate step names")

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(c for c in CHANNELS if any(s.channel == c for s in self.steps))

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise ProgramDefinitionError(f"program {self.name} has no step {name!r}")
