"""The plan task's work: the audience streamed through the planner a chunk at a time,
each chunk's decisions recorded (or, in a dry run, rendered) before the next is read, so
the task's memory stays flat however large the audience.

What a chunk needs from the ledger (decisions already made, the once_per rule, the
frequency cap) is looked up for its contacts only; every row of a contact is in one chunk.
Rows that cannot send are settled in SQL first (nurture.settled): only the others stream.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from nurture import ledger, planner, policies, settings, settled, warehouse
from nurture.program import Program
from nurture.templates import TemplateSet

log = logging.getLogger(__name__)


def plan(program: Program, *, run_id: str, dry_run: bool, filters: Mapping[str, Any],
         frequency_cap: int, steps: Sequence[str], send_limit: int | None,
         batch_size: int, chunk_rows: int = planner.CHUNK_ROWS,
         in_sql: bool = True) -> planner.Plan:
    """Decide every (contact, step) pair and record the decisions unless this is a dry
    run (see `nurture.tasks.plan`). Returns the plan's counts and batches.

    `in_sql`: settle in SQL what needs no Python (nurture.settled); False decides every
    row in Python (the same decisions, slower: to compare the two)."""
    with warehouse.connect() as conn:
        ledger.lock_program(conn, program.name)  # held until commit: one planner at a time
        now = datetime.now(UTC)
        for hook in program.before_plan:
            hook(conn, now=now, filters=filters)
        stranded = [row for row in ledger.stranded(conn, program=program.name)
                    if not steps or row["step"] in steps]
        if filters:  # a narrowed run resumes only its part of the audience
            inside = planner.audience_keys(conn, program, filters,
                                           contacts={row["contact_id"] for row in stranded})
            stranded = [row for row in stranded
                        if (row["contact_id"], row["enrollment_id"]) in inside]
        # Room for what earlier runs left planned (at most this many are adopted below).
        held_for_stranded = sum(row["state"] == "planned" for row in stranded)
        made = planner.Planner(
            program, now=now, batch_size=batch_size, steps=steps, records=not dry_run,
            send_limit=None if send_limit is None else max(0, send_limit - held_for_stranded))
        # A narrowed run sees only part of what is coming.
        records_upcoming = not dry_run and not filters and not steps
        if records_upcoming:
            policies.record_upcoming(conn, program, [])
        wanted = {(row["contact_id"], row["enrollment_id"]) for row in stranded}
        check = RenderCheck(program) if dry_run else None
        stranded_rows: dict[tuple[str, str], Mapping[str, Any]] = {}
        decisions = written = planned_new = 0
        # What the planner reads, and in a dry run what the templates do: the dispatcher
        # reads whole rows when it sends.
        columns = set().union(*check.names.values()) if check else set()
        settling = None
        if in_sql:
            types = settled.column_types(conn, program)
            planner.check_columns(program, types)  # before anything is decided
            where, params = planner.narrowed(program, filters)
            settling = settled.settle(conn, program, made.chosen, now=now, where=where,
                                      params=params, types=types,
                                      columns=columns | planner.required_columns(program))
            made.add_settled(settling.counts(conn))
            if not dry_run:
                for entries, upcoming in settling.rows(conn, size=chunk_rows):
                    decisions += len(entries)
                    written += ledger.record(conn, entries, dag_run_id=run_id)
                    if records_upcoming:
                        policies.record_upcoming(conn, program, upcoming, replace=False)
        for chunk in planner.audience_chunks(conn, program, filters, size=chunk_rows,
                                             columns=columns, settling=settling):
            contacts = {row["contact_id"] for row in chunk}
            decided = made.add(
                chunk, ledger.existing_states(conn, program.name, contacts),
                messaged_recently=(ledger.messaged_since(conn, program, now - program.once_per,
                                                         contacts)
                                   if program.once_per else frozenset()),
                cap=policies.load_cap(conn, program, limit=frequency_cap, now=now,
                                      contacts=contacts))
            by_key = {(row["contact_id"], row["enrollment_id"]): row for row in chunk}
            stranded_rows.update((key, by_key[key]) for key in wanted & by_key.keys())
            if dry_run:
                count_template_errors(check, made.plan, decided.entries, by_key)
                continue
            decisions += len(decided.entries)
            written += ledger.record(conn, decided.entries, dag_run_id=run_id)
            planned_new += sum(entry.state == "planned" for entry in decided.entries)
            if records_upcoming:
                policies.record_upcoming(conn, program, decided.upcoming, replace=False)
        result = made.finish()
        if dry_run:
            conn.rollback()  # a dry run changes nothing, the hooks' work included
            return result
        if written < decisions:
            log.warning("%d decisions were already recorded by another run", decisions - written)
        resumption = planner.resume_stranded(
            program, result, stranded, stranded_rows, now=now, batch_size=batch_size,
            send_limit=None if send_limit is None else send_limit - planned_new)
        ledger.adopt(conn, resumption.adopt, dag_run_id=run_id)
        ledger.close(conn, resumption.close)
    return result


class RenderCheck:
    """Whether a planned message renders, for a dry run, through the dispatcher's own code:
    with the unsubscribe and survey links it would add (signed with a throwaway key, as a
    preview's are), and without them when NURTURE_PUBLIC_URL is unset, as it would send.

    A render's outcome depends only on the values its templates read (every name the
    step's templates, in any locale, or a layout uses), so each distinct set of those is
    rendered once: thousands of messages to similar rows make a few hundred renders."""

    MEMORY = 100_000  # outcomes kept

    def __init__(self, program: Program) -> None:
        from nurture.preview import rendering_job

        self.program = program
        self.templates = _Unchanging(settings.TEMPLATES_DIR, program.name,
                                     program.default_locale)
        self.templates.env.auto_reload = False  # not looked at again on each render
        layouts = _names_read(self.templates, settings.TEMPLATES_DIR / "_layouts")
        self.names = {step.name: sorted(layouts | _names_read(
            self.templates, settings.TEMPLATES_DIR / program.name / step.template))
            for step in program.steps}
        self.outcomes: dict[tuple, bool] = {}
        self.job = dataclasses.replace(rendering_job(program, public_url=settings.public_url()),
                                       templates=self.templates)

    def renders(self, step_name: str, locale: str, contact: Mapping[str, Any]) -> bool:
        from nurture.preview import render_step

        key = (step_name, locale, *(contact.get(name) for name in self.names[step_name]))
        try:
            return self.outcomes[key]
        except KeyError:
            pass
        except TypeError:  # a value that cannot be a key (a list): render it every time
            key = None
        try:
            render_step(self.job, self.program.step(step_name), contact, locale)
            outcome = True
        except Exception:  # TemplateProblem, or template maths on odd data: as deliver does
            outcome = False
        if key is not None:
            if len(self.outcomes) >= self.MEMORY:
                self.outcomes.clear()
            self.outcomes[key] = outcome
        return outcome


class _Unchanging(TemplateSet):
    """Templates whose folders and versions are looked up once: a plan renders thousands
    of messages from templates that do not change while it runs."""

    @functools.cache  # noqa: B019 (one set per plan, gone with it)
    def resolve_locale(self, template: str, locale: str) -> str:
        return super().resolve_locale(template, locale)

    @functools.cache  # noqa: B019
    def version(self, template: str, locale: str) -> str:
        return super().version(template, locale)


def _names_read(templates, folder) -> set[str]:
    """Every variable name the templates under `folder` use."""
    from jinja2 import meta

    names: set[str] = set()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            names |= meta.find_undeclared_variables(templates.env.parse(path.read_text()))
    return names


def count_template_errors(check: RenderCheck, made: planner.Plan,
                          entries: Sequence[ledger.Entry],
                          contacts: Mapping[tuple[str, str], Mapping[str, Any]]) -> None:
    """A dry run renders every planned message, so it shows template errors too."""
    for entry in entries:
        if entry.state == "planned" and not check.renders(
                entry.step, entry.locale, contacts[(entry.contact_id, entry.enrollment_id)]):
            made.counts[entry.step]["planned"] -= 1
            made.counts[entry.step]["template_error"] += 1
