"""Who is owed which message now: the audience × the program's steps, minus everything
that stops a message, each stop with its reason.

`decide` is the whole policy for one contact and one step, pure so it can be tested
without a database; `plan` applies it to the audience and writes the decisions to the
ledger in batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nurture import addresses, ledger
from nurture.exceptions import ProgramDefinitionError
from nurture.policies import LOOKAHEAD, FrequencyCap, in_holdout
from nurture.program import Program, Step

SEND, SKIP, WAIT = "send", "skip", "wait"
UNFINISHED = ("planned", "sending")
DEFERRED = "deferred"  # capped: decided again each run, as if nothing were recorded
# Due, but this run's send limit is used up: nothing recorded, so the next run decides it.
LIMIT_WAIT = "run_limit_reached"
# Waiting reasons of a message that will go out soon: what the frequency cap reserves room for.
UPCOMING = ("not_due", "outside_send_window", "frequency_cap_full", LIMIT_WAIT)
CAPPED_WAIT = "frequency_cap_full"


@dataclass(frozen=True)
class Decision:
    """`send`: plan it; `skip`: record why not, for good; `wait`: nothing to record yet,
    except a wait for room under the frequency cap, recorded `deferred`."""

    action: str
    reason: str
    recipient: str | None = None
    locale: str | None = None


def decide(
    program: Program,
    step: Step,
    contact: Mapping[str, Any],
    *,
    now: datetime,
    existing_state: str | None = None,
) -> Decision:
    if existing_state is not None:
        return Decision(WAIT, f"already_{existing_state}")
    due = due_at(step, contact)
    if due is None or now < due:  # no anchor: the event it waits for has not happened
        return Decision(WAIT, "not_due")
    # The goal ends the contact's messages, not the alerts it may trigger (a lead's
    # handoff to sales is the goal reached). No goal column: assume it is reached.
    if program.goal and not step.is_internal and contact.get(program.goal, True):
        return Decision(SKIP, "goal_reached")
    # A condition is looked at again each run while the step may still go out (a seat
    # given after the reminder fell due still earns the reminder); then it closes.
    met = not step.condition or contact.get(step.condition)
    if now - due > step.expires_after:
        return Decision(SKIP, "expired" if met else "condition_not_met")
    if not met:
        return Decision(WAIT, "condition_not_yet_met")
    if step.is_internal:  # to a colleague: the contact's consent and hours do not apply
        try:
            recipient = _address(step.channel, contact.get(step.to))
        except addresses.Unusable as unusable:
            return Decision(SKIP, f"{unusable.reason.split('_')[0]}_{step.to}")
        return Decision(SEND, "due", recipient=recipient, locale=program.default_locale)
    if not contact.get(f"has_{step.channel}_consent"):
        return Decision(SKIP, "no_consent")
    try:
        recipient = _address(step.channel, contact.get("email" if step.channel == "email"
                                                        else "phone"))
        locale = addresses.locale(contact.get("locale"), program.default_locale)
        if program.send_window.applies_to(step.channel):
            local = now.astimezone(addresses.time_zone(contact.get("time_zone")))
            if not program.send_window.contains(local.time()):
                return Decision(WAIT, "outside_send_window")
    except addresses.Unusable as unusable:
        return Decision(SKIP, unusable.reason)
    return Decision(SEND, "due", recipient=recipient, locale=locale)


def due_at(step: Step, contact: Mapping[str, Any]) -> datetime | None:
    anchor = contact.get(step.anchor)
    return None if anchor is None else anchor + step.after


def _address(channel: str, value: Any) -> str:
    if channel == "email":
        return addresses.email_address(value)
    return addresses.phone_number(value)


@dataclass
class Plan:
    """Counts per step and reason, and the batches to dispatch per channel."""

    counts: dict[str, Counter] = field(default_factory=dict)
    batches: dict[str, list[int]] = field(default_factory=dict)
    entries: list[ledger.Entry] = field(default_factory=list)
    # Marketing messages waiting to fall due within a day: (step, contact, enrollment, due)
    upcoming: list[tuple[str, str, str, datetime]] = field(default_factory=list)


def make_plan(
    program: Program,
    audience: list[Mapping[str, Any]],
    existing: Mapping[tuple[str, str, str], str],
    *,
    now: datetime,
    batch_size: int,
    messaged_recently: Set[str] = frozenset(),
    cap: FrequencyCap | None = None,
    steps: Collection[str] = (),
    send_limit: int | None = None,
) -> Plan:
    """`messaged_recently`: contacts a message of this program went to within its
    `once_per` period (see `ledger.messaged_since`); with the audience ordered by due time,
    a contact's first due message wins. `cap`: the frequency cap (nurture.policies), which
    this plan's marketing messages use up as they are planned. `steps`: only these (empty:
    all). `send_limit`: plan at most this many; the others due wait, unrecorded."""
    if audience:
        check_columns(program, audience[0].keys())
    chosen = [step for step in program.steps if not steps or step.name in steps]
    plan = Plan(counts={step.name: Counter() for step in chosen})
    position = dict.fromkeys(program.channels, 0)
    messaged = set(messaged_recently)
    for contact in audience:
        for step in chosen:
            key = (step.name, contact["contact_id"], contact["enrollment_id"])
            state = existing.get(key)
            if state in UNFINISHED:
                continue  # an earlier run's row: resume_stranded decides and counts it
            decision = decide(program, step, contact, now=now,
                              existing_state=None if state == DEFERRED else state)
            if decision.action == SEND:
                # The limit comes first: a message it holds back must leave no trace in
                # the once_per and frequency-cap bookkeeping.
                if send_limit is not None and sum(position.values()) >= send_limit:
                    decision = Decision(WAIT, LIMIT_WAIT)
                else:
                    decision = _apply_policies(program, step, contact["contact_id"],
                                               decision, messaged, cap)
            plan.counts[step.name][decision.reason if decision.action != SEND else "planned"] += 1
            if decision.action == WAIT:
                due = due_at(step, contact)
                if (step.is_marketing and decision.reason in UPCOMING and due is not None
                        and due <= now + LOOKAHEAD):
                    plan.upcoming.append((step.name, *key[1:], due))
                # The ledger says a capped message waits; other waits record nothing yet.
                if decision.reason != CAPPED_WAIT or state == DEFERRED:
                    continue
            batch_no = None
            if decision.action == SEND:
                batch_no = position[step.channel] // batch_size
                position[step.channel] += 1
            plan.entries.append(ledger.Entry(
                program=program.name, step=step.name, contact_id=contact["contact_id"],
                enrollment_id=contact["enrollment_id"], channel=step.channel,
                state={SEND: "planned", SKIP: "skipped", WAIT: DEFERRED}[decision.action],
                reason=None if decision.action == SEND else decision.reason,
                recipient=decision.recipient, locale=decision.locale,
                due_at=due_at(step, contact), batch_no=batch_no,
                is_marketing=step.is_marketing,
            ))
    plan.batches = {
        channel: list(range(-(-count // batch_size))) for channel, count in position.items()
    }
    return plan


def _apply_policies(program: Program, step: Step, contact_id: str, decision: Decision,
                    messaged: set[str], cap: FrequencyCap | None) -> Decision:
    """A message `decide` would send, through the holdout, once_per and the frequency cap."""
    if step.is_marketing and in_holdout(program.name, contact_id, program.holdout):
        return Decision(SKIP, "held_out")
    if program.once_per and not step.is_internal:
        if contact_id in messaged:
            return Decision(SKIP, "messaged_recently")
        messaged.add(contact_id)
    if step.is_marketing and cap is not None:
        if not cap.allows(contact_id):
            if program.when_capped == "wait":  # looked at again next run, until it expires
                return Decision(WAIT, CAPPED_WAIT)
            return Decision(SKIP, "frequency_capped")
        cap.take(contact_id)
    return decision


@dataclass
class Resumption:
    """What to do with rows earlier runs left unfinished."""

    adopt: list[tuple[str, int]] = field(default_factory=list)  # (ledger_id, batch_no)
    close: list[tuple[str, str, str]] = field(default_factory=list)  # (ledger_id, state, reason)


def resume_stranded(program: Program, plan: Plan, stranded: list[Mapping[str, Any]],
                    audience: Mapping[tuple[str, str], Mapping[str, Any]], *,
                    now: datetime, batch_size: int,
                    send_limit: int | None = None) -> Resumption:
    """Rows an earlier run (or an earlier try of this plan) left unfinished.

    A never-claimed row is decided again on the contact's current audience row — it goes
    out with this run, is closed with the reason it now may not (goal reached, consent
    withdrawn, expired...), or keeps waiting (outside the send window). A row claimed and
    never settled may have gone out: `unknown`. A deferred row make_plan has decided again;
    here it is closed only when its contact left the audience or its step was removed.
    `send_limit`: adopt at most this many; the others stay planned for a later run.
    Updates the plan's counts and batches.
    """
    resumption = Resumption()
    queued = {channel: len(plan.batches.get(channel, [])) * batch_size
              for channel in program.channels}
    steps = {step.name: step for step in program.steps}
    for row in stranded:
        counts = plan.counts.setdefault(row["step"], Counter())
        contact = audience.get((row["contact_id"], row["enrollment_id"]))
        if row["state"] == DEFERRED and contact is not None and row["step"] in steps:
            continue  # decided again, and counted, by make_plan
        if row["state"] == "sending":
            closing = ("unknown", "interrupted_during_send")
        elif row["step"] not in steps:
            closing = ("skipped", "step_removed")
        elif contact is None:
            closing = ("skipped", "left_audience")
        else:
            step = steps[row["step"]]
            decision = decide(program, step, contact, now=now)
            if decision.action == WAIT:
                counts[decision.reason] += 1
                continue
            if decision.action == SKIP:
                closing = ("skipped", decision.reason)
            elif send_limit is not None and len(resumption.adopt) >= send_limit:
                counts[LIMIT_WAIT] += 1
                continue
            else:
                resumption.adopt.append((row["ledger_id"], queued[step.channel] // batch_size))
                queued[step.channel] += 1
                counts["planned"] += 1
                continue
        resumption.close.append((row["ledger_id"], *closing))
        counts[closing[1]] += 1
    plan.batches = {channel: list(range(-(-count // batch_size)))
                    for channel, count in queued.items()}
    return resumption


def required_columns(program: Program) -> set[str]:
    columns = {"contact_id", "enrollment_id", "locale", *program.filters}
    for step in program.steps:
        columns |= {step.anchor} | {c for c in (step.condition, step.to) if c}
        if not step.is_internal:
            columns |= {f"has_{step.channel}_consent",
                        "email" if step.channel == "email" else "phone"}
            if program.send_window.applies_to(step.channel):
                columns.add("time_zone")
    if program.goal:
        columns.add(program.goal)
    return columns


def check_columns(program: Program, columns) -> None:
    """Fail before deciding anything when the audience lacks a column the program reads."""
    missing = required_columns(program) - set(columns)
    if missing:
        raise ProgramDefinitionError(
            f"audience {program.audience} lacks column(s) {', '.join(sorted(missing))} "
            f"that program {program.name} needs"
        )


def read_audience(conn, program: Program,
                  filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The audience, narrowed to `filters` (column -> value, columns from program.filters),
    each contact's rows in the order they fell due."""
    from psycopg2.extras import RealDictCursor

    filters = {column: value for column, value in (filters or {}).items()
               if value not in (None, "")}
    unknown = set(filters) - set(program.filters)
    if unknown:
        raise ProgramDefinitionError(f"program {program.name} cannot be narrowed by "
                                     f"{', '.join(sorted(unknown))}")
    # Names were checked as identifiers when the program was defined; values are bound.
    where = " and ".join(f"{column}::text = %s" for column in filters) or "true"
    order = ", ".join(dict.fromkeys(step.anchor for step in program.steps))
    with conn.cursor(cursor_factory=RealDictCursor) as cur:
        cur.execute(f"select * from marts.{program.audience} where {where}"
                    f" order by contact_id, {order}, enrollment_id",
                    [str(value) for value in filters.values()])
        return [dict(row) for row in cur]
