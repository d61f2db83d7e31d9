"""What each task of a program DAG does, as plain functions of (program, run id, ...).

The DAG factory wraps these in Airflow tasks; tests can call them directly. Each returns a
small summary fit for XCom.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from nurture import (
    guard,
    ledger,
    planner,
    planning,
    policies,
    reconcile,
    settings,
    summary,
    test_sends,
    warehouse,
)
from nurture.dispatcher import Dispatch, dispatch_batch
from nurture.exceptions import GuardFailed, RunIncomplete
from nurture.program import Program
from nurture.run_options import RunOptions
from nurture.templates import TemplateSet
from nurture.tokens import TokenSigner

log = logging.getLogger(__name__)

# Messages per send task: big enough that a task's start-up is small beside its sending
# (5,000 at 64 requests in flight and 100 ms each take ~8 s), small enough that a million
# due messages map to 200 tasks (Airflow maps at most 1,024).
BATCH_SIZE = 5_000
DEFAULT_DISPATCH_CONCURRENCY = 64  # requests in flight per send task
MAX_SOURCE_AGE = timedelta(hours=24)


def prepare(program: Program | None = None) -> dict:
    """Create Nurture's own tables if this warehouse has never seen them, and settle the
    program's `unknown` messages that provider events have since proved sent."""
    with warehouse.connect() as conn:
        ledger.ensure_schema(conn)
        return reconcile.reconcile(conn, program.name if program else None)


def check_audience(program: Program, *, run_id: str) -> dict:
    """Run the program's expectation suite; raise GuardFailed (nothing sent) on failure."""
    with warehouse.connect() as conn:
        last_good = _last_good_row_count(conn, program.name)
    min_rows, max_rows = guard.row_count_bounds(last_good)
    result = guard.validate(
        suite_file=settings.EXPECTATIONS_DIR / f"{program.audience}.json",
        warehouse_url=settings.warehouse_url() or "",
        schema="marts",
        table=program.audience,
        parameters={"min_rows": min_rows, "max_rows": max_rows,
                    "fresh_after": datetime.now(UTC) - MAX_SOURCE_AGE},
    )
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "insert into nurture.guard_results (program, dag_run_id, success, row_count,"
            " failures, result) values (%s, %s, %s, %s, %s, %s)",
            (program.name, run_id, result.success, result.row_count,
             json.dumps(list(result.failures)), json.dumps(result.result, default=str)),
        )
    outcome = {"success": result.success, "row_count": result.row_count,
               "failures": list(result.failures)}
    if not result.success:
        raise GuardFailed(
            f"the guard refused the {program.audience} audience, so nothing is sent. Failed: "
            + "; ".join(result.failures)
            + f". Full result: select result from nurture.guard_results where dag_run_id = "
            f"'{run_id}'"
        )
    return outcome


def plan(program: Program, *, run_id: str, dry_run: bool,
         filters: dict[str, Any] | None = None,
         frequency_cap: int = policies.DEFAULT_FREQUENCY_CAP,
         steps: Sequence[str] = (), send_limit: int | None = None,
         batch_size: int = BATCH_SIZE) -> dict:
    """Decide every (contact, step) pair; record decisions unless this is a dry run.

    `filters` narrow the run to part of the audience (program.filters, e.g. one webinar);
    `frequency_cap`: marketing messages per contact per 7 days, across programs; `steps`:
    only these steps (empty: all); `send_limit`: plan at most this many messages — what
    earlier runs left planned first — and leave the rest waiting for the next run;
    `batch_size`: messages per send task."""
    filters = {column: value for column, value in (filters or {}).items() if value}
    made = planning.plan(program, run_id=run_id, dry_run=dry_run, filters=filters,
                         frequency_cap=frequency_cap, steps=steps, send_limit=send_limit,
                         batch_size=batch_size)
    batches = [] if dry_run else [
        {"channel": channel, "batch_no": batch_no}
        for channel, numbers in made.batches.items() for batch_no in numbers
    ]
    return {"counts": {step: dict(c) for step, c in made.counts.items()}, "batches": batches}


def send(program: Program, *, run_id: str, channel: str, batch_no: int) -> dict:
    """Dispatch one batch of this run's planned messages on one channel."""
    from airflow.sdk import Variable

    from nurture.providers import SendGridHook, TwilioHook
    from nurture.send_rate import SharedRateLimiter

    public_url = settings.public_url()
    if public_url is None:
        log.warning("NURTURE_PUBLIC_URL is not set: emails go out without unsubscribe links "
                    "and SMS without status callbacks")
    job = Dispatch(
        program=program,
        templates=TemplateSet(settings.TEMPLATES_DIR, program.name, program.default_locale),
        email=SendGridHook(),
        # A sender's SMS rate holds across send tasks and workers: slots in the warehouse.
        sms=TwilioHook(shared_limiter=partial(SharedRateLimiter, warehouse.resolve_url())),
        public_url=public_url,
        # With a public URL, an email without its unsubscribe link, or a survey without
        # its link, must not go out: a missing key fails the task (ConfigurationError)
        # before anything is claimed.
        signer=TokenSigner.from_connection() if public_url else None,
        concurrency=int(Variable.get("nurture_dispatch_concurrency",
                                     default=DEFAULT_DISPATCH_CONCURRENCY)),
    )
    with warehouse.connect() as conn:
        return dispatch_batch(conn, job, dag_run_id=run_id, channel=channel, batch_no=batch_no)


def send_tests(program: Program, *, run_id: str, options: RunOptions) -> list[dict]:
    """A test run's sends: the chosen steps, rendered for a sample contact, to the
    marketer's own address or number only (see nurture.test_sends)."""
    from nurture.preview import rendering_job
    from nurture.providers import SendGridHook, TwilioHook

    with warehouse.connect() as conn:
        audience = planner.read_audience(conn, program, options.filters)
        return test_sends.send(
            conn, rendering_job(program, public_url=settings.public_url()),
            {"email": SendGridHook(), "sms": TwilioHook()},
            run_id=run_id, steps=options.chosen_steps(program),
            addresses={"email": options.test_email, "sms": options.test_phone},
            audience=audience, now=datetime.now(UTC), contact_id=options.test_contact_id,
        )


def finish(program: Program, *, run_id: str, dry_run: bool, plan_counts: dict,
           options: RunOptions | None = None) -> dict:
    """Store and log the run's summary; fail the run if the guard stopped it.

    Outcomes are read back from the ledger (and test sends from theirs) rather than from
    the send tasks, so the summary is right even when a send task failed or was retried.
    """
    options = options or RunOptions(dry_run=dry_run)
    with warehouse.connect() as conn:
        guard_row = _guard_for_run(conn, program.name, run_id)
        outcomes = ledger.run_counts(conn, program=program.name, dag_run_id=run_id)
        made = summary.build(program, plan_counts, outcomes, dry_run=dry_run, guard=guard_row,
                             options=options,
                             tests=test_sends.for_run(conn, program=program.name,
                                                      dag_run_id=run_id))
        made["quarantined"] = _quarantined(conn)
        # Events of this run's ambiguous sends may be in already: resolve them after counting.
        made["unknown"] = reconcile.reconcile(conn, program.name).get(
            program.name, {"reconciled": 0, "still_unknown": 0})
        summary.store(conn, made, dag_run_id=run_id)
    log.info("summary of %s:\n%s", run_id, summary.format_table(made))
    if guard_row and not guard_row["success"]:
        raise GuardFailed("the guard failed: nothing was sent. " + "; ".join(guard_row["failures"]))
    if not plan_counts:
        raise RunIncomplete("nothing was planned: a task before planning failed (dbt, the "
                            "guard or the plan itself); see the failed task's log")
    failed_tests = [t for t in made["tests"] if t["state"] != "sent"]
    if options.is_test and (failed_tests or not made["tests"]):
        raise RunIncomplete(
            "the test send did not go out: "
            + ("; ".join(f"{t['step']}: {t['state']} ({t['reason']})" for t in failed_tests)
               or "see the plan task's log"))
    stranded = sum(step["not_sent"].get("not_dispatched", 0) for step in made["steps"])
    if stranded:
        raise RunIncomplete(
            f"{stranded} planned message(s) were not dispatched: a send task failed (see its "
            "log). They stay planned; the next run sends them (or records why not)."
        )
    return made


def _quarantined(conn) -> dict[str, int]:
    """{reason: rows} of marts.contacts_quarantined: source rows no audience sees."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass('marts.contacts_quarantined') is not null")
        if not cur.fetchone()[0]:
            return {}
        cur.execute("select reason, count(*) from marts.contacts_quarantined group by reason"
                    " order by reason")
        return dict(cur.fetchall())


def _last_good_row_count(conn, program: str) -> int | None:
    with conn.cursor() as cur:
        cur.execute(
            "select row_count from nurture.guard_results where program = %s and success"
            " order by checked_at desc limit 1",
            (program,),
        )
        row = cur.fetchone()
    return row[0] if row else None


def _guard_for_run(conn, program: str, run_id: str) -> dict | None:
    with conn.cursor() as cur:
        cur.execute(
            "select success, row_count, failures from nurture.guard_results"
            " where program = %s and dag_run_id = %s order by checked_at desc limit 1",
            (program, run_id),
        )
        row = cur.fetchone()
    return {"success": row[0], "row_count": row[1], "failures": row[2]} if row else None
