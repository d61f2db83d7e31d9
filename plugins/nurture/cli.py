"""`nurture`: the command line for running programs and their local stand-ins."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from nurture import settings
from nurture.exceptions import NurtureError

OUTBOX = settings.STATE_DIR / "outbox.sqlite"
EVENT_KEY_ENV = "NURTURE_EMULATOR_EVENT_KEY"  # PEM the emulator signs SendGrid events with


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except NurtureError as err:
        print(f"nurture: {err}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nurture", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run one program's DAG through Airflow, once")
    run.add_argument("program")
    run.add_argument("--dry-run", action="store_true", help="plan and report; send nothing")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument("--emulator", action="store_true",
                     help="send to the local provider emulator instead of the connections")
    run.add_argument("--verbose", action="store_true", help="show Airflow's log here")
    run.add_argument("--only", action="append", default=[], metavar="COLUMN=VALUE",
                     help="narrow the run as the trigger form does, e.g. webinar_id=W003")
    run.set_defaults(handler=cmd_run)

    outbox = commands.add_parser("outbox", help="what the provider emulator received")
    outbox.add_argument("--json", action="store_true")
    outbox.set_defaults(handler=cmd_outbox)

    emulator = commands.add_parser("emulator", help="serve the provider emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8025)
    emulator.add_argument("--events-url", help="post provider events to the receiver at this"
                          " base URL (SendGrid's signed with the PEM key in "
                          f"{EVENT_KEY_ENV})")
    emulator.set_defaults(handler=cmd_emulator)

    hooks = commands.add_parser("webhooks", help="serve the signed provider webhook receiver")
    hooks.add_argument("--host", default="127.0.0.1")
    hooks.add_argument("--port", type=int, default=8000)
    hooks.set_defaults(handler=cmd_webhooks)

    seed = commands.add_parser("seed", help="load the demo dataset into the warehouse")
    seed.set_defaults(handler=cmd_seed)

    wh = commands.add_parser("warehouse", help="the embedded PostgreSQL warehouse")
    wh.add_argument("action", choices=("start", "stop", "url"))
    wh.set_defaults(handler=cmd_warehouse)

    dbt = commands.add_parser("dbt", help="run dbt on dbt_project/ against the warehouse")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    dbt.set_defaults(handler=cmd_dbt)

    report = commands.add_parser("report", help="write the BI marts as one self-contained"
                                 " HTML file with charts")
    report.add_argument("--out", type=Path, default=settings.STATE_DIR / "report.html",
                        help="where to write it (default: %(default)s)")
    report.set_defaults(handler=cmd_report)

    af = commands.add_parser("airflow", help="airflow standalone on this project, or its "
                             "components under CeleryExecutor")
    af.add_argument("--port", type=int, default=8080)
    af.add_argument("--emulator-port", type=int, default=8025)
    af.add_argument("--executor", choices=("standalone", "celery"), default="standalone",
                    help="celery: a Redis broker, a PostgreSQL metadata database and "
                    "--workers Celery workers")
    af.add_argument("--workers", type=int, default=2, help="Celery workers (default 2)")
    af.add_argument("--worker-concurrency", type=int, default=2,
                    help="task instances each Celery worker runs at once (default 2)")
    af.set_defaults(handler=cmd_airflow)

    preview = commands.add_parser("preview", help="render one step for one contact, as it "
                                  "would be sent")
    preview.add_argument("program")
    preview.add_argument("step")
    preview.add_argument("--contact", required=True, metavar="ID", help="a contact_id in the "
                         "program's audience")
    preview.add_argument("--locale", help="render in this locale instead of the contact's")
    preview.set_defaults(handler=cmd_preview)

    lint = commands.add_parser("lint", help="check every program's templates in every locale")
    lint.add_argument("--root", type=Path, help="templates folder (default include/templates)")
    lint.add_argument("--max-subject-chars", type=int, metavar="N")
    lint.add_argument("--max-sms-segments", type=int, metavar="N")
    lint.set_defaults(handler=cmd_lint)

    doctor = commands.add_parser("doctor", help="check this deployment: connections, keys, "
                                 "public URL, pools, warehouse, dbt manifest")
    doctor.set_defaults(handler=cmd_doctor)

    af_settings = commands.add_parser("airflow-settings",
                                      help="load airflow_settings.yaml into Airflow")
    af_settings.set_defaults(handler=cmd_airflow_settings)

    rec = commands.add_parser("reconcile", help="settle `unknown` messages that provider "
                              "events have since proved sent")
    rec.add_argument("program", nargs="?", help="one program (default: all)")
    rec.set_defaults(handler=cmd_reconcile)

    bench = commands.add_parser("bench", help="measure every stage on a synthetic warehouse")
    bench.add_argument("--contacts", type=int, default=1_000_000)
    bench.add_argument("--events", type=int, help="activity and message events "
                       "(default: 20 per contact)")
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument("--plan-only", action="store_true", help="only time each program's "
                       "guard and dry-run plan, on the warehouse an earlier bench left")
    bench.set_defaults(handler=cmd_bench)
    return parser


def cmd_run(args) -> int:
    from nurture import runner, summary

    log_dir = settings.STATE_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log_file = log_dir / f"{args.program}-{stamp}.log"
    providers = runner.emulated_providers(OUTBOX) if args.emulator else contextlib.nullcontext()
    with providers, _output_to(None if args.verbose else log_file):
        result = runner.run_program(args.program, dry_run=args.dry_run,
                                    filters=_pairs(args.only))
    if args.json:
        print(json.dumps({"run_id": result.run_id, "state": result.state,
                          "summary": result.summary}, indent=2, default=str))
    else:
        print(summary.format_table(result.summary) if result.summary else "no summary recorded")
        print(f"\nrun {result.run_id}: {result.state}")
        if not args.verbose:
            print(f"Airflow's log of this run: {log_file}")
        if args.emulator:
            print(f"What was sent: `nurture outbox` (the emulator's outbox is {OUTBOX});"
                  " every decision: `select * from marts.message_sends` in the warehouse"
                  " (`nurture warehouse url`).")
    return 0 if result.state.endswith("success") else 1


def cmd_outbox(args) -> int:
    from nurture.emulator import OutboxStore

    messages = OutboxStore(OUTBOX).messages() if OUTBOX.exists() else []
    _attribute(messages)
    if args.json:
        print(json.dumps(messages, indent=2, default=str))
        return 0
    print(f"{'channel':<8}{'recipient':<38}{'program':<12}{'step':<12}subject / body")
    for m in messages:
        content = (m.get("subject") if m["channel"] == "email" else m.get("text")) or ""
        print(f"{m['channel']:<8}{m['recipient']:<38}{m.get('program') or '':<12}"
              f"{m.get('step') or '':<12}{content[:60]}")
    print(f"{len(messages)} message(s) in {OUTBOX}")
    return 0


def _attribute(messages: list[dict]) -> None:
    """Fill in program and step from the ledger where the request did not carry them (an
    SMS sent without a status callback URL)."""
    missing = {m["message_id"]: m for m in messages if not m.get("step")}
    if not missing:
        return
    from nurture import warehouse

    with warehouse.connect(warehouse.resolve_url()) as conn, conn.cursor() as cur:
        cur.execute("select provider_message_id, program, step from nurture.message_ledger"
                    " where provider_message_id = any(%s)", (list(missing),))
        for message_id, program, step in cur:
            missing[message_id].update(program=program, step=step)


def cmd_emulator(args) -> int:
    from nurture.emulator import serve
    from nurture.runner import EMULATOR_CREDENTIALS

    print(f"provider emulator on http://{args.host}:{args.port} (outbox {OUTBOX}); Ctrl-C stops")
    if args.events_url:
        print(f"posting provider events to {args.events_url}")
    serve(args.host, args.port, OUTBOX, **EMULATOR_CREDENTIALS, events_url=args.events_url,
          sendgrid_event_key=os.environ.get(EVENT_KEY_ENV))
    return 0


def cmd_webhooks(args) -> int:
    """The receiver in the foreground; its public URL comes from NURTURE_PUBLIC_URL."""
    import uvicorn

    from nurture import airflow_env, warehouse

    airflow_env.configure()
    from nurture.webhooks.config import from_connections

    public_url = settings.public_url() or f"http://{args.host}:{args.port}"
    app = from_connections(warehouse_url=warehouse.resolve_url(), public_url=public_url)
    print(f"webhook receiver on http://{args.host}:{args.port}, verifying Twilio signatures "
          f"against {public_url}; Ctrl-C stops it")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_seed(args) -> int:
    from nurture import seed, warehouse

    url = warehouse.resolve_url()
    with warehouse.connect(url) as conn:
        counts = seed.load(conn, seed.build())
    rows = ", ".join(f"{table}: {n}" for table, n in counts.items())
    print(f"demo dataset loaded into {_masked(url)} (raw schema) — {rows}")
    return 0


def cmd_reconcile(args) -> int:
    from nurture import ledger, reconcile, warehouse

    with warehouse.connect(warehouse.resolve_url()) as conn:
        ledger.ensure_schema(conn)
        counts = reconcile.reconcile(conn, args.program)
    for program, count in sorted(counts.items()):
        print(f"{program}: {count['reconciled']} proved sent by provider events, "
              f"{count['still_unknown']} still unknown")
    if not counts:
        print("no message has an unknown outcome")
    return 0


def cmd_warehouse(args) -> int:
    from nurture.warehouse import EmbeddedWarehouse, resolve_url

    if args.action == "stop":
        EmbeddedWarehouse(settings.STATE_DIR / "warehouse").stop()
        return 0
    print(resolve_url())
    return 0


def cmd_dbt(args) -> int:
    from nurture import warehouse

    warehouse.export_env(warehouse.resolve_url())
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    dbt = Path(sys.executable).with_name("dbt")
    command = [str(dbt), *args.dbt_args, "--project-dir", str(settings.DBT_PROJECT_DIR),
               "--profiles-dir", str(settings.DBT_PROJECT_DIR)]
    return subprocess.run(command, cwd=settings.DBT_PROJECT_DIR).returncode


def cmd_preview(args) -> int:
    from nurture import catalog, warehouse
    from nurture.preview import render_preview

    program = catalog.program(args.program)
    if settings.public_url() is None:
        print("nurture: NURTURE_PUBLIC_URL is not set: as the dispatcher would, this renders "
              "without unsubscribe and survey links", file=sys.stderr)
    with warehouse.connect(warehouse.resolve_url()) as conn:
        shown = render_preview(conn, program, args.step, args.contact, args.locale)
    print(f"{shown.program}/{shown.step} for {args.contact}: {shown.channel} to "
          f"{shown.recipient or '(no address)'}, templates {shown.locale}")
    if shown.channel == "sms":
        print(f"{shown.encoding}, {shown.segments} segment(s), {len(shown.text)} characters\n")
        print(shown.text)
        return 0
    print(f"Subject: {shown.subject}\n\n--- text ---\n{shown.text.rstrip()}\n\n--- html ---")
    print(shown.html)
    return 0


def cmd_lint(args) -> int:
    import dataclasses

    from nurture import catalog, lint

    if not settings.DBT_MANIFEST.exists():
        raise NurtureError(f"{settings.DBT_MANIFEST} is missing: run `make manifest`")
    limits = {"subject_chars": args.max_subject_chars, "sms_segments": args.max_sms_segments}
    rules = dataclasses.replace(lint.Rules(), **{k: v for k, v in limits.items() if v})
    programs = catalog.programs()
    problems = lint.lint(programs.values(), root=args.root or settings.TEMPLATES_DIR,
                         contracts=lint.read_contracts(settings.DBT_MANIFEST), rules=rules)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in the templates of {len(programs)} program(s)",
          file=sys.stderr)
    return 1 if problems else 0


def cmd_doctor(args) -> int:
    from nurture import airflow_env, doctor

    airflow_env.configure()
    findings = doctor.diagnose(doctor.gather())
    print(doctor.report(findings))
    return 1 if any(finding.severity == "error" for finding in findings) else 0


def cmd_report(args) -> int:
    from nurture import report, warehouse

    out = report.write(args.out, warehouse.resolve_url())
    print(f"report written to {out.resolve()}")
    return 0


def cmd_airflow_settings(args) -> int:
    from nurture import airflow_env

    airflow_env.configure()
    airflow_env.migrate()
    loaded = airflow_env.load_settings()
    print("loaded from airflow_settings.yaml: "
          + ", ".join(f"{n} {kind}" for kind, n in loaded.items()))
    return 0


def cmd_airflow(args) -> int:
    """`airflow standalone`, or Airflow's components under Celery, with this project's
    settings and the local provider emulator; prints where to log in."""
    from nurture import runner, warehouse
    from nurture.emulator import new_event_signing_key

    url = warehouse.resolve_url()
    if args.executor == "celery":
        from nurture import celery_cluster

        if args.workers < 1 or args.worker_concurrency < 1:
            raise NurtureError("--workers and --worker-concurrency must be at least 1")
        celery_cluster.configure(url)
    runner.prepare_airflow()
    warehouse.export_env(url)
    home = Path(os.environ["AIRFLOW_HOME"])
    os.environ["AIRFLOW__API__PORT"] = str(args.port)
    os.environ["AIRFLOW__API__BASE_URL"] = f"http://localhost:{args.port}"  # workers call it
    os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    # standalone starts its components as `airflow ...`: find this virtualenv's first.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    # The provider connections point at the emulator, which posts its events, signed, to
    # the receiver the plugin mounts in the API server under /nurture.
    public_url = settings.public_url() or f"http://localhost:{args.port}/nurture"
    emulator_url = f"http://127.0.0.1:{args.emulator_port}"
    private_key, public_key = new_event_signing_key()
    os.environ.update(runner.emulator_connections(emulator_url, webhook_key=public_key))
    os.environ["NURTURE_PUBLIC_URL"] = public_url
    emulator = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "emulator", "--port", str(args.emulator_port),
         "--events-url", public_url],
        stdout=subprocess.DEVNULL, env={**os.environ, EVENT_KEY_ENV: private_key})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    processes: dict[str, subprocess.Popen] = {}
    try:
        if args.executor == "celery":
            processes = celery_cluster.start(home, port=args.port, workers=args.workers,
                                             concurrency=args.worker_concurrency)
            logs = home / "process-logs"
            how = (f"CeleryExecutor, {args.workers} workers, Redis broker "
                   f"{os.environ['AIRFLOW__CELERY__BROKER_URL']}, metadata database "
                   f"{_masked(os.environ['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'])}")
        else:
            logs = home / "standalone.log"
            processes["standalone"] = subprocess.Popen(
                [str(Path(sys.executable).with_name("airflow")), "standalone"],
                stdout=logs.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
            how = "airflow standalone"
        passwords = home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + 180
        while (not passwords.exists() and time.monotonic() < deadline
               and all(p.poll() is None for p in processes.values())):
            time.sleep(1)
        if passwords.exists():
            login = json.loads(passwords.read_text())
            user, password = next(iter(login.items()))
            print(f"Airflow is starting on http://localhost:{args.port} — log in as {user} / "
                  f"{password} (from {passwords}). {how}; its logs: {logs}. The provider "
                  f"emulator listens on :{args.emulator_port} (`nurture outbox`) and reports "
                  f"to the webhook receiver at {public_url}. Ctrl-C stops everything.",
                  flush=True)
        return _first_exit(processes)
    except KeyboardInterrupt:
        return 0
    finally:
        emulator.terminate()  # first: its events would only fail against a stopping receiver
        _stop_groups(list(processes.values()))


def _first_exit(processes: dict[str, subprocess.Popen]) -> int:
    """Wait until one of the processes ends (any of them ending stops them all)."""
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                if len(processes) > 1:
                    print(f"nurture: {name} stopped (exit code {process.returncode}); "
                          "stopping the rest", file=sys.stderr)
                return process.returncode
        time.sleep(1)


def _pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise SystemExit(f"--only takes COLUMN=VALUE, not {item!r}")
        pairs[column] = value
    return pairs


def _stop_groups(processes: list[subprocess.Popen]) -> None:
    """Stop processes and every one they started (each leads its own process group): all
    asked at once, then killed if any of their group is still running after a grace period."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not [p for p in processes if p.poll() is None or _group_alive(p.pid)]:
                return
            time.sleep(0.2)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def _output_to(log_file: Path | None):
    """Send this process's stdout and stderr (Airflow's task logs) to a file."""
    if log_file is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def cmd_bench(args) -> int:
    from nurture.bench import measure
    from nurture.bench.synthetic import Size

    if args.contacts < 1:
        raise NurtureError("--contacts must be at least 1")
    size = Size(args.contacts, args.events if args.events is not None else 20 * args.contacts,
                args.seed)
    log_file = settings.STATE_DIR / "logs" / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if args.plan_only:
        with open(os.dup(2), "w") as terminal, _output_to(log_file):
            report = measure.plan_only(say=lambda line: print(line, file=terminal, flush=True))
        print(json.dumps(report, indent=2))
        return 0
    # Airflow, dbt and GX log to stdout: into the log file, so stdout holds only the report;
    # stages and their figures still reach the terminal as they end (progress bars too,
    # unless --json).
    with (open(os.dup(2), "w") as terminal, _output_to(log_file),
          measure.progress_bars(size, terminal, quiet=args.json) as progress):
        report = measure.run(size, progress=progress,
                             say=lambda line: print(line, file=terminal, flush=True))
    print(json.dumps(report, indent=2) if args.json else measure.format_table(report))
    print(f"log: {log_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
