"""The audience rows the plan can settle in SQL, so they never come to Python.

Most (contact, step) pairs are decided by their own columns alone: not due yet, already
decided by an earlier run, or — due — stopped by the goal, expired, or waiting for a
condition. A row all of whose steps are such, and none of them left unfinished by an
earlier run, cannot send, so it takes nothing from the once_per rule, the frequency cap or
the send limit: its decisions are counted by PostgreSQL instead. Every other row (the
"live" ones) is streamed to `planner.Planner` and decided by it, all its steps included.

Each case below is `planner.decide` / `Planner.add` for one reason, written in SQL; a
column whose type would make SQL read it differently from Python (a condition that is
not boolean, an anchor that is not timestamptz) leaves its step to Python.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nurture import ledger
from nurture.policies import LOOKAHEAD
from nurture.program import Program, Step

BOOLEAN, TIMESTAMPTZ = 16, 1184  # PostgreSQL type OIDs
# Memory for the hash joins of the plan's transaction (`set local`): PostgreSQL's default,
# 4 MB, spills a million-row audience to disk in 32 batches, a second of the webinar plan
# at 1M contacts. Each of the settling statement's two hashes may take twice this.
WORK_MEM = "128MB"
# An audience with at most this many distinct enrollments (a webinar program's: the
# webinars open now) joins those enrollments' states only, looked up by index; with more
# (one enrollment a contact) it joins the program's. An enrollment that joins the audience
# between the look and the settling (a new webinar) has no states yet. Were it to have
# some, its rows settle as undecided: a due one goes to Python, which reads the ledger's
# states, and a skip recorded in SQL is refused by the ledger's unique key.
FEW_ENROLLMENTS = 1000
SKIPS = ("goal_reached", "expired", "condition_not_met")  # recorded `skipped`
NOT_DUE = "not_due"


@dataclass
class Settling:
    """One plan's audience, read once into a temporary table (`table`, dropped when the
    plan's transaction ends) with each step's settled reason (`plan_class_<i>`, null when
    Python must decide) and whether the row is settled (`plan_settled`); the columns the
    plan reads are kept for the live rows only (and those it needs for settled ones)."""

    program: Program
    steps: Sequence[Step]
    now: datetime
    table: str
    columns: list[str]  # the audience's columns the table holds

    def live_rows(self, order: str) -> str:
        """The query of the live rows, in `order`."""
        listed = ", ".join(f'"{name}"' for name in self.columns)
        return f"select {listed} from {self.table} where not plan_settled order by {order}"

    def counts(self, conn) -> Counter:
        """(step, reason) -> settled rows."""
        counts: Counter = Counter()
        if not self.steps:
            return counts
        listed = ", ".join(f"plan_class_{i}" for i in range(len(self.steps)))
        with conn.cursor() as cur:
            cur.execute(f"select {listed}, count(*) from {self.table} where plan_settled"
                        f" group by {listed}")
            for *reasons, rows in cur:
                for step, reason in zip(self.steps, reasons, strict=True):
                    counts[(step.name, reason)] += rows
        return counts

    def rows(self, conn, *, size: int
             ) -> Iterator[tuple[list[ledger.Entry], list[tuple[str, str, str, datetime]]]]:
        """What a real run records of the settled rows, a chunk at a time: their skips
        (entries), and their marketing messages falling due within a day (upcoming)."""
        if not self.steps:
            return
        classes = ", ".join(f"plan_class_{i}" for i in range(len(self.steps)))
        anchors = ", ".join(f'"{step.anchor}"' for step in self.steps)
        with conn.cursor(name=f"settled_{self.program.name}") as cur:
            cur.itersize = size
            cur.execute(f"select contact_id, enrollment_id, {classes}, {anchors}"
                        f" from {self.table} where plan_settled")
            count = len(self.steps)
            while chunk := cur.fetchmany(size):
                entries, upcoming = [], []
                for contact_id, enrollment_id, *values in chunk:
                    for step, reason, anchor in zip(self.steps, values[:count], values[count:],
                                                    strict=True):
                        if reason in SKIPS:
                            entries.append(ledger.Entry(
                                program=self.program.name, step=step.name,
                                contact_id=contact_id, enrollment_id=enrollment_id,
                                channel=step.channel, state="skipped", reason=reason,
                                due_at=anchor + step.after, is_marketing=step.is_marketing))
                        elif (reason == NOT_DUE and step.is_marketing and anchor is not None
                              and anchor <= self.now + LOOKAHEAD - step.after):
                            upcoming.append((step.name, contact_id, enrollment_id,
                                             anchor + step.after))
                yield entries, upcoming


def column_types(conn, program: Program) -> dict[str, int]:
    """The audience's columns: name -> type OID."""
    with conn.cursor() as cur:
        cur.execute(f"select * from marts.{program.audience} limit 0")
        return {column.name: column.type_code for column in cur.description}


def settle(conn, program: Program, steps: Sequence[Step], *, now: datetime,
           where: str, params: Sequence[Any], columns: Collection[str],
           types: Mapping[str, int]) -> Settling:
    """Read the audience narrowed by `where` (`params`) into the plan's table, settling
    what it can of `steps` at `now`; `columns`: those the plan reads; `types`: the
    audience's (`column_types`)."""
    def literal(value: Any) -> str:
        with conn.cursor() as cur:
            return cur.mogrify("%s", (value,)).decode()

    kept = [name for name in types if name in columns]
    always = {"contact_id", "enrollment_id", *(step.anchor for step in steps)}
    classes = [_case(program, step, now, types, literal) for step in steps]
    settled = " and ".join(["u.contact_id is null",
                            *(f"k.plan_class_{i} is not null" for i in range(len(steps)))])
    table = f"plan_{program.name}"
    of_program = f"program = {literal(program.name)}"
    with conn.cursor() as cur:
        cur.execute("select set_config('work_mem', %s, true)", (WORK_MEM,))
        states = f"l.{of_program}"
        enrollments = _few_enrollments(cur, f"marts.{program.audience}", where, params)
        if enrollments is not None:
            states += f" and l.enrollment_id = any({literal(enrollments)}::text[])"
        # Each enrollment's ledger states are one row (`ledger.SCHEMA_DDL`); what earlier
        # runs left unfinished is few rows, read from its partial index. The laterals (not
        # pulled up: offset 0) work out each case once per row.
        cur.execute(
            f"create temporary table {table} on commit drop as select "
            + ", ".join([*(f'a."{name}"' if name in always else
                           f'case when s.plan_settled then null else a."{name}" end as "{name}"'
                           for name in kept), "k.*", "s.plan_settled"])
            + f" from marts.{program.audience} as a"
            f" left join nurture.enrollment_states as l on {states}"
            " and l.contact_id = a.contact_id and l.enrollment_id = a.enrollment_id"
            " left join (select distinct contact_id, enrollment_id from nurture.message_ledger"
            f" where {of_program} and state in ('planned', 'sending', 'deferred')) as u"
            " on u.contact_id = a.contact_id and u.enrollment_id = a.enrollment_id"
            " cross join lateral (select "
            + ", ".join([*(f"{case} as plan_class_{i}" for i, case in enumerate(classes)),
                         "true as plan_any"])
            + " offset 0) as k"
            f" cross join lateral (select {settled} as plan_settled offset 0) as s"
            f" where {where}", params)
    return Settling(program=program, steps=steps, now=now, table=table, columns=kept)


def _few_enrollments(cur, audience: str, where: str, params: Sequence[Any]
                     ) -> list[str] | None:
    """The distinct enrollments of `audience` narrowed by `where`, if at most
    FEW_ENROLLMENTS (reading no further than it takes to find more); None if more."""
    cur.execute(f"select distinct enrollment_id from {audience} where {where}"
                f" limit {FEW_ENROLLMENTS + 1}", params)
    found = [enrollment_id for (enrollment_id,) in cur.fetchall()]
    return found if len(found) <= FEW_ENROLLMENTS else None


def _case(program: Program, step: Step, now: datetime, types: Mapping[str, int],
          literal) -> str:
    """The step's settled reason for a row, as SQL; null: Python decides it."""
    state = f"l.states ->> {literal(step.name)}"
    # Rows with an unfinished state are live: a state here is a final one.
    whens = [f"when {state} is not null then 'already_' || ({state})"]
    anchor = f'a."{step.anchor}"'
    if types.get(step.anchor) == TIMESTAMPTZ:
        whens.append(f"when {anchor} is null or {anchor} > {literal(now - step.after)}"
                     f" then '{NOT_DUE}'")
        decidable = True
        if program.goal and not step.is_internal:
            decidable = types.get(program.goal) == BOOLEAN
            if decidable:
                whens.append(f"when a.\"{program.goal}\" then 'goal_reached'")
        if step.condition and types.get(step.condition) != BOOLEAN:
            decidable = False
        if decidable:
            met = f'a."{step.condition}" is true' if step.condition else "true"
            expired_before = literal(now - step.after - step.expires_after)
            whens.append(f"when {anchor} < {expired_before} then case when {met}"
                         " then 'expired' else 'condition_not_met' end")
            if step.condition:
                whens.append(f"when not ({met}) then 'condition_not_yet_met'")
    return f"case {' '.join(whens)} end"
