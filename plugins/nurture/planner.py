"""Who is owed which message now: the audience × the program's steps, minus everything
that stops a message, each stop with its reason.

`decide` is the whole policy for one contact and one step, pure so it can be tested
without a database; `plan` applies it to the audience and writes the decisions to the
ledger in batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from nurture import addresses, ledger
from nurture.exceptions import ProgramDefinitionError
from nurture.policies import LOOKAHEAD, FrequencyCap, in_holdout
from nurture.program import Program, Step
from nurture.settled import Settling

SEND, SKIP, WAIT = "send", "skip", "wait"
UNFINISHED = ("planned", "sending")
DEFERRED = "deferred"  # capped: decided again each run, as if nothing were recorded
# Due, but this run's send limit is used up: nothing recorded, so the next run decides it.
LIMIT_WAIT = "run_limit_reached"
# Waiting reasons of a message that will go out soon: what the frequency cap reserves room for.
UPCOMING = ("not_due", "outside_send_window", "frequency_cap_full", LIMIT_WAIT)
CAPPED_WAIT = "frequency_cap_full"
_STATES = {SEND: "planned", SKIP: "skipped", WAIT: DEFERRED}  # the ledger's, per action


class Decision(NamedTuple):
    """`send`: plan it; `skip`: record why not, for good; `wait`: nothing to record yet,
    except a wait for room under the frequency cap, recorded `deferred`. (A named tuple:
    cheap to make millions of.)"""

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
    return decide_due(program, step, contact, due_at(step, contact), now=now)


def decide_due(program: Program, step: Step, contact: Mapping[str, Any],
               due: datetime | None, *, now: datetime) -> Decision:
    """`decide` for a pair nothing is recorded for, its due time worked out already."""
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


@dataclass
class Decided:
    """What one chunk of the audience came to: decisions to record, and what is coming."""

    entries: list[ledger.Entry] = field(default_factory=list)
    upcoming: list[tuple[str, str, str, datetime]] = field(default_factory=list)


class Planner:
    """`make_plan`, fed the audience a chunk at a time so a plan's memory does not grow
    with the audience: the counts and batch positions carry over from chunk to chunk,
    the decisions (`Decided`) are handed back to be recorded and forgotten.

    Each chunk must hold every row of its contacts (see `audience_chunks`): the once_per
    rule and the frequency cap are looked up, and used up, per contact within a chunk.
    """

    def __init__(self, program: Program, *, now: datetime, batch_size: int,
                 steps: Collection[str] = (), send_limit: int | None = None,
                 records: bool = True) -> None:
        """`records=False` (a dry run): hand back only the planned entries (to render)."""
        self.program, self.now, self.batch_size = program, now, batch_size
        self.send_limit, self.records = send_limit, records
        self.chosen = [step for step in program.steps if not steps or step.name in steps]
        self.plan = Plan(counts={step.name: Counter() for step in self.chosen})
        self.position = dict.fromkeys(program.channels, 0)
        self._columns_checked = False

    def add(self, audience: list[Mapping[str, Any]],
            existing: Mapping[tuple[str, str, str], str], *,
            messaged_recently: Set[str] = frozenset(),
            cap: FrequencyCap | None = None) -> Decided:
        """Decide every (contact, step) pair of this chunk. `existing`, `messaged_recently`
        and `cap` need to cover the chunk's contacts only."""
        if audience and not self._columns_checked:
            check_columns(self.program, audience[0].keys())
            self._columns_checked = True
        program, now, counts, position = self.program, self.now, self.plan.counts, self.position
        decided = Decided()
        messaged = set(messaged_recently)
        # Most pairs are not due yet, or have no anchor: said here as `decide` would say
        # it, by comparing the anchor with a time worked out once per step, not per row.
        rules = [(step, step.anchor, now - step.after,
                  now + LOOKAHEAD - step.after if step.is_marketing else None,
                  counts[step.name], step.is_marketing) for step in self.chosen]
        decided_steps: dict[tuple[str, str], dict[str, str]] = {}  # per row: step -> state
        for (step_name, contact_id, enrollment_id), state in existing.items():
            decided_steps.setdefault((contact_id, enrollment_id), {})[step_name] = state
        nothing: dict[str, str] = {}
        for contact in audience:
            contact_id, enrollment_id = contact["contact_id"], contact["enrollment_id"]
            states = decided_steps.get((contact_id, enrollment_id), nothing)
            for step, anchor_column, due_by, coming_by, step_counts, marketing in rules:
                state = states.get(step.name)
                if state in UNFINISHED:
                    continue  # an earlier run's row: resume_stranded decides and counts it
                anchor = contact.get(anchor_column)
                if (state is None or state == DEFERRED) and (anchor is None or anchor > due_by):
                    step_counts["not_due"] += 1
                    if coming_by is not None and anchor is not None and anchor <= coming_by:
                        decided.upcoming.append((step.name, contact_id, enrollment_id,
                                                 anchor + step.after))
                    continue
                due = None if anchor is None else anchor + step.after
                if state is None or state == DEFERRED:
                    decision = decide_due(program, step, contact, due, now=now)
                else:
                    decision = Decision(WAIT, f"already_{state}")
                if decision.action == SEND:
                    # The limit comes first: a message it holds back must leave no trace in
                    # the once_per and frequency-cap bookkeeping.
                    if (self.send_limit is not None
                            and sum(position.values()) >= self.send_limit):
                        decision = Decision(WAIT, LIMIT_WAIT)
                    else:
                        decision = _apply_policies(program, step, contact_id, decision,
                                                   messaged, cap)
                step_counts[decision.reason if decision.action != SEND else "planned"] += 1
                if decision.action == WAIT:
                    if (marketing and decision.reason in UPCOMING and due is not None
                            and due <= now + LOOKAHEAD):
                        decided.upcoming.append((step.name, contact_id, enrollment_id, due))
                    # The ledger says a capped message waits; other waits record nothing yet.
                    if decision.reason != CAPPED_WAIT or state == DEFERRED:
                        continue
                batch_no = None
                if decision.action == SEND:
                    batch_no = position[step.channel] // self.batch_size
                    position[step.channel] += 1
                elif not self.records:
                    continue
                decided.entries.append(ledger.Entry(
                    program=program.name, step=step.name, contact_id=contact_id,
                    enrollment_id=enrollment_id, channel=step.channel,
                    state=_STATES[decision.action],
                    reason=None if decision.action == SEND else decision.reason,
                    recipient=decision.recipient, locale=decision.locale,
                    due_at=due, batch_no=batch_no, is_marketing=marketing,
                ))
        return decided

    def add_settled(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Count what SQL settled ((step, reason) -> pairs: see nurture.settled)."""
        for (step_name, reason), pairs in counts.items():
            self.plan.counts[step_name][reason] += pairs

    def finish(self) -> Plan:
        """The plan, with its batches, once every chunk has been added."""
        self.plan.batches = {channel: list(range(-(-count // self.batch_size)))
                             for channel, count in self.position.items()}
        return self.plan


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
    """The whole audience in one chunk: every decision kept in the plan's entries.

    `messaged_recently`: contacts a message of this program went to within its
    `once_per` period (see `ledger.messaged_since`); with the audience ordered by due time,
    a contact's first due message wins. `cap`: the frequency cap (nurture.policies), which
    this plan's marketing messages use up as they are planned. `steps`: only these (empty:
    all). `send_limit`: plan at most this many; the others due wait, unrecorded."""
    planner = Planner(program, now=now, batch_size=batch_size, steps=steps,
                      send_limit=send_limit)
    decided = planner.add(audience, existing, messaged_recently=messaged_recently, cap=cap)
    plan = planner.finish()
    plan.entries, plan.upcoming = decided.entries, decided.upcoming
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


CHUNK_ROWS = 5_000  # audience rows decided at a time


def read_audience(conn, program: Program,
                  filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The whole audience at once (previews, test sends: small or narrowed audiences);
    the plan streams it with `audience_chunks`."""
    return [row for chunk in audience_chunks(conn, program, filters) for row in chunk]


def audience_chunks(conn, program: Program, filters: Mapping[str, Any] | None = None, *,
                    size: int = CHUNK_ROWS, columns: Collection[str] | None = None,
                    settling: Settling | None = None) -> Iterator[list[dict[str, Any]]]:
    """The audience, narrowed to `filters` (column -> value, columns from program.filters),
    in chunks of about `size` rows read through a server-side cursor, each contact's rows
    in the order they fell due and all in one chunk.

    `columns`: only these of the audience's columns (and those the program needs: a
    program whose audience lacks one fails here, before anything is decided); all if None.

    `settling`: only the rows it cannot settle in SQL (see nurture.settled).

    Runs in the caller's transaction (the cursor lives until it ends or the chunks are
    read), so the plan sees one snapshot of the audience however long it takes."""
    where, params = narrowed(program, filters)
    order = ", ".join(dict.fromkeys(step.anchor for step in program.steps))
    order = f"contact_id, {order}, enrollment_id"
    selected = "*"
    if columns is not None:
        with conn.cursor() as cur:
            cur.execute(f"select * from marts.{program.audience} limit 0")
            present = [column.name for column in cur.description]
        check_columns(program, present)
        wanted = set(columns) | required_columns(program)
        # Names were checked as identifiers (the program's) or come from the audience.
        selected = ", ".join(f'"{name}"' for name in present if name in wanted)
    query = (f"select {selected} from marts.{program.audience} where {where}"
             f" order by {order}")
    if settling is not None:  # read already, narrowed and its columns chosen
        query, params = settling.live_rows(order), []
    with conn.cursor(name=f"audience_{program.name}") as cur:
        cur.itersize = size
        cur.execute(query, params)
        pending: list[dict[str, Any]] = []
        while rows := cur.fetchmany(size):
            columns = [column.name for column in cur.description]
            pending.extend(dict(zip(columns, row, strict=True)) for row in rows)
            # Hold back the last contact's rows: the next fetch may have more of them.
            last, cut = pending[-1]["contact_id"], len(pending)
            while cut and pending[cut - 1]["contact_id"] == last:
                cut -= 1
            if cut:
                yield pending[:cut]
                pending = pending[cut:]
        if pending:
            yield pending


def audience_keys(conn, program: Program, filters: Mapping[str, Any] | None,
                  contacts: Collection[str]) -> set[tuple[str, str]]:
    """(contact_id, enrollment_id) of the narrowed audience's rows for `contacts`."""
    where, params = narrowed(program, filters)
    with conn.cursor() as cur:
        cur.execute(f"select contact_id, enrollment_id from marts.{program.audience}"
                    f" where {where} and contact_id = any(%s)", [*params, list(contacts)])
        return set(cur.fetchall())


def narrowed(program: Program, filters: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    """A where clause (and its values) narrowing the audience to `filters`: column ->
    value, columns from program.filters; empty values are ignored."""
    filters = {column: value for column, value in (filters or {}).items()
               if value not in (None, "")}
    unknown = set(filters) - set(program.filters)
    if unknown:
        raise ProgramDefinitionError(f"program {program.name} cannot be narrowed by "
                                     f"{', '.join(sorted(unknown))}")
    # Names were checked as identifiers when the program was defined; values are bound.
    where = " and ".join(f"{column}::text = %s" for column in filters) or "true"
    return where, [str(value) for value in filters.values()]
