"""Measure each stage on a synthetic warehouse, in its own embedded PostgreSQL
(`.nurture/bench/`), so the demo warehouse is never touched.

Figures are wall-clock seconds on whatever machine runs it; nothing here asserts a target.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from nurture import settings, warehouse
from nurture.bench import dispatch
from nurture.bench.synthetic import Size, append_day, load, now_utc
from nurture.providers.sendgrid_hook import DEFAULT_PER_REQUEST

# Keys of the JSON report; None: not measured (plan_s: a program could not be planned, see
# "plan"). Dispatch figures: nurture.bench.dispatch says what they measure.
KEYS = ("contacts", "events", "load_s", "dbt_full_s", "dbt_incremental_s", "guard_s",
        "plan_s", "dispatch_email_per_s", "dispatch_email_baseline_per_s",
        "dispatch_sms_per_s", "sms_rate_limit_per_s", "emulator_ceiling_per_s",
        "dag_parse_s", "dispatcher_peak_rss_mb")


CHUNK = dispatch.CONCURRENCY * DEFAULT_PER_REQUEST  # rows a send task claims at once
PLAN_MEMORY_LIMIT = 10 * 2**30  # address space of the process planning one program
PUBLIC_URL = "https://nurture.bench.invalid"  # where links would point; nothing is sent


@contextmanager
def _timer(into: dict, key: str, say: Callable[[str], None]):
    """Time the block into `into[key]`, and say it at once (a long run keeps what it has
    measured even if a later stage fails)."""
    start = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - start, 2)
    say(f"  {key}: {into[key]}")


def run(size: Size, *, progress: Callable[[str, int], None] = lambda table, rows: None,
        say: Callable[[str], None] = print) -> dict:
    """Every measurement, in order; returns the report (KEYS, plus per-program detail)."""
    report: dict = dict.fromkeys(KEYS) | {"contacts": size.contacts, "events": size.events,
                                          "machine": _machine()}
    now = now_utc()
    with _bench_warehouse():
        say(f"loading {size.contacts:,} contacts and {size.events:,} events (COPY)")
        with warehouse.connect() as conn, _timer(report, "load_s", say):
            report["rows"] = load(conn, size, now=now, progress=progress)
        say("dbt build --full-refresh")
        with _timer(report, "dbt_full_s", say):
            _dbt("build", "--full-refresh", *settings.DBT_SCHEDULED_BUILD_FLAGS)
        with warehouse.connect() as conn:
            report["rows_added_for_incremental"] = append_day(conn, size, now=now)
        say("dbt build after one more day of events")
        with _timer(report, "dbt_incremental_s", say):
            _dbt("build", *settings.DBT_SCHEDULED_BUILD_FLAGS)
        report["guard"], report["plan"] = _guards_and_plans(say)
        report["guard_s"] = max(g["seconds"] for g in report["guard"].values())
        # The slowest program's; none when one could not be planned at all.
        if all("error" not in p for p in report["plan"].values()):
            report["plan_s"] = max(p["seconds"] for p in report["plan"].values())
        with warehouse.connect() as conn:  # what a send task reads per chunk, at this size
            report["consent_read_per_chunk_s"] = dispatch.consent_read_seconds(conn, CHUNK)
        say(f"  send-time consent read of {CHUNK:,} contacts:"
            f" {report['consent_read_per_chunk_s']} s")
        say("dispatch against the emulator (100 ms latency)")
        report.update(dispatch.measure(size.contacts, say))
        say("parsing dags/")
        report["dag_parse_s"] = _dag_parse_seconds()
    return report


def plan_only(say: Callable[[str], None] = print) -> dict:
    """Each program's guard and dry-run plan, as `run` times them, on the bench warehouse
    an earlier `nurture bench` left (`.nurture/bench/`), nothing loaded or built: to time
    guard and planner changes quickly."""
    with _bench_warehouse():
        guard, plan = _guards_and_plans(say)
    return {"machine": _machine(), "guard": guard, "plan": plan}


@contextmanager
def _bench_warehouse() -> Iterator[None]:
    """The bench's embedded warehouse started and in the environment, Airflow configured
    (the guard and the DAG parse run it) and GX's logging quiet; stopped afterwards."""
    from nurture import airflow_env

    airflow_env.configure()
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    server = warehouse.EmbeddedWarehouse(settings.STATE_DIR / "bench" / "warehouse")
    warehouse.export_env(server.start())
    try:
        yield
    finally:
        server.stop()


def _guards_and_plans(say: Callable[[str], None]) -> tuple[dict, dict]:
    """Each program's guard, then its dry-run plan, with the load average after each."""
    from nurture import catalog

    guards, plans = {}, {}
    for name, program in catalog.programs().items():
        guards[name] = _guard(program) | {"load_average": os.getloadavg()[0]}
        say(f"  guard {name}: {guards[name]}")
        plans[name] = _in_child(_plan, program, memory_limit=PLAN_MEMORY_LIMIT) | {
            "load_average": os.getloadavg()[0]}
        say(f"  plan {name}: {plans[name]}")
    return guards, plans


def _dbt(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "nurture.cli", "dbt", *args, "--quiet"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def _guard(program) -> dict:
    from nurture import tasks
    from nurture.exceptions import GuardFailed

    start = time.perf_counter()
    try:
        outcome = tasks.check_audience(program, run_id=f"bench-{time.time_ns()}")
        passed, detail = True, outcome["row_count"]
    except GuardFailed as failed:
        passed, detail = False, str(failed).split(". Full result")[0]
    return {"seconds": round(time.perf_counter() - start, 2), "passed": passed,
            "detail": detail}


def _plan(program) -> dict:
    """A dry run of the planner: the whole decision, written nowhere. It renders as a
    deployment's would, with a public URL (a survey's link needs one); in its own process."""
    from nurture import tasks

    os.environ.setdefault("NURTURE_PUBLIC_URL", PUBLIC_URL)
    start = time.perf_counter()
    made = tasks.plan(program, run_id=f"bench-{time.time_ns()}", dry_run=True)
    planned = sum(counts.get("planned", 0) for counts in made["counts"].values())
    return {"seconds": round(time.perf_counter() - start, 2), "planned": planned}


def _in_child(measure: Callable[..., dict], *args, memory_limit: int) -> dict:
    """`measure(*args)` in a forked process limited to `memory_limit` bytes of address
    space, with its peak memory: a stage that does not scale fails there, not the machine."""
    import multiprocessing
    import resource

    def child(pipe) -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        start = time.perf_counter()
        try:
            result = measure(*args)
        except MemoryError:
            result = {"seconds": round(time.perf_counter() - start, 2),
                      "error": f"ran out of its {memory_limit / 2**30:.0f} GB"}
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        pipe.send(result | {"peak_rss_mb": round(peak_kb / 1024)})

    parent, child_end = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=child, args=(child_end,))
    process.start()
    process.join()
    if not parent.poll():
        return {"error": f"the measuring process died (exit code {process.exitcode})"}
    return parent.recv()


def _dag_parse_seconds() -> float:
    """dags/ parsed in a fresh interpreter by Airflow's DagBag; the sum of the per-file
    durations it records, as its DAG processor reports them."""
    code = ("from airflow.dag_processing.dagbag import DagBag;"
            f"bag = DagBag(dag_folder={str(settings.DAGS_FOLDER)!r});"
            "assert not bag.import_errors, bag.import_errors;"
            "print(sum(s.duration.total_seconds() for s in bag.dagbag_stats))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return round(float(result.stdout.strip().splitlines()[-1]), 2)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@contextmanager
def progress_bars(size: Size, terminal: TextIO, *, quiet: bool = False):
    """A progress bar per raw table while the synthetic data loads."""
    from rich.console import Console
    from rich.progress import Progress

    from nurture.bench.synthetic import expected_rows

    with Progress(disable=quiet, console=Console(file=terminal)) as bars:
        tasks: dict[str, int] = {}

        def advance(table: str, rows: int) -> None:
            if table not in tasks:
                tasks[table] = bars.add_task(table, total=expected_rows(size, table))
            bars.advance(tasks[table], rows)

        yield advance


def format_table(report: dict) -> str:
    """The report as a plain-text table, the per-program guard and plan times below it."""
    lines = [f"nurture bench on {report['machine']}", ""]
    for key in KEYS:
        value = report[key]
        shown = "not measured" if value is None else (
            f"{value:,}" if isinstance(value, int) else f"{value:,.2f}")
        lines.append(f"{key:<32}{shown:>20}")
    lines.append("")
    for name in report.get("plan", {}):
        guard, plan = report["guard"][name], report["plan"][name]
        verdict = "passed" if guard["passed"] else f"refused: {guard['detail']}"
        planned = plan.get("error") or f"{plan['planned']:,} planned"
        lines.append(f"{name:<22} guard {guard['seconds']:>7.2f} s ({verdict})"
                     f"   plan {plan.get('seconds', 0):>7.2f} s ({planned},"
                     f" peak {plan.get('peak_rss_mb', '?')} MB)")
    if report.get("dispatch_email_detail"):
        lines += ["", dispatch.describe(report)]
    if report.get("consent_read_per_chunk_s") is not None:
        lines.append(f"send-time consent read per chunk ({CHUNK:,} contacts, dbt's view):"
                     f" {report['consent_read_per_chunk_s']} s")
    return "\n".join(lines)
