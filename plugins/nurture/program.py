"""The program definition: what an analytics engineer writes to make a lifecycle program.

A `Program` is plain data — steps, delays, channels, templates, conditions, a goal, a send
window — checked when it is built, so a typo fails at DAG parse time with a clear message
rather than mid-send. `nurture.dag_factory.build_dag` compiles it into an Airflow DAG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Literal

from nurture.exceptions import ProgramDefinitionError

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")

# Names reach SQL, file paths and Airflow ids: allow only plain identifiers.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value or ""):
        raise ProgramDefinitionError(
            f"{kind} {value!r} must be lower-case letters, digits and underscores, "
            "starting with a letter (at most 63 characters)"
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
    """One message of a program, sent `after` enrollment on one channel.

    `expires_after` is how late it may still go out: a welcome found a week late (after an
    outage or a bulk import) is recorded as expired, not sent. `condition` names a boolean
    audience column that must be true at send time.
    """

    name: str
    channel: Channel
    after: timedelta
    expires_after: timedelta = timedelta(days=1)
    template: str = ""
    condition: str | None = None

    def __post_init__(self) -> None:
        check_name("step", self.name)
        if self.channel not in CHANNELS:
            raise ProgramDefinitionError(f"step {self.name}: channel must be one of {CHANNELS}")
        if self.after < timedelta(0) or self.expires_after <= timedelta(0):
            raise ProgramDefinitionError(f"step {self.name}: delays must be positive")
        if not self.template:
            object.__setattr__(self, "template", self.name)
        check_name("template", self.template)
        if self.condition is not None:
            check_name("condition column", self.condition)


def email(name: str, *, after: timedelta, **options) -> Step:
    return Step(name=name, channel="email", after=after, **options)


def sms(name: str, *, after: timedelta, **options) -> Step:
    return Step(name=name, channel="sms", after=after, **options)


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

    def __post_init__(self) -> None:
        check_name("program", self.name)
        check_name("audience model", self.audience)
        if self.goal is not None:
            check_name("goal column", self.goal)
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
