"""Dispatch throughput and memory, against the provider emulator with 100 ms of latency.

The emulator runs in its own process (it must not share the dispatcher's interpreter, or
the figure would be the emulator's), and so does each dispatch, so its peak memory is the
dispatcher's alone. What is measured, on the bench warehouse:

- `emulator_ceiling_per_s`: messages the emulator accepts a second at no latency, under many
  concurrent raw HTTP clients (keep-alive, asyncio) sending requests shaped as the dispatcher
  sends them (`personalizations_per_request` messages each, bodies as substitutions): the
  most any dispatch could reach on this machine. `emulator_ceiling_requests_per_s`: the same
  with one message a request.
- `dispatch_email_per_s`: a sample of the due email (`EMAIL_SAMPLE` at most) sent the way
  send tasks send it — `SEND_TASKS` processes at once, each claiming batches of the DAG's
  size, rendering the onboarding welcome templates, sending through the SendGrid SDK and
  settling in the ledger — while every due message (one per contact) waits in the ledger
  as `planned`.
- `dispatch_email_baseline_per_s`: the same rows and templates, one message at a time,
  each claimed and settled in its own commit.
- `dispatch_sms_per_s`: SMS sent under the Twilio connection's `messages_per_second`
  (`sms_rate_limit_per_s`), from the emulator's arrival times; `sms_max_in_any_second` is
  the most that arrived in any sliding one-second window (never above the limit).
- `dispatcher_peak_rss_mb`: the largest peak resident memory of those processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from nurture import settings, warehouse

LATENCY_S = 0.1
EMAIL_SAMPLE = 20_000
BASELINE_SAMPLE = 20
SMS_RATE_PER_S = 50
SMS_SAMPLE = 500
# Enough threads for the rate at the latency, twice over: more would only wait their turn.
SMS_CONCURRENCY = max(4, round(2 * SMS_RATE_PER_S * LATENCY_S))
CONCURRENCY = 25  # threads of a send task: airflow_settings.yaml's nurture_dispatch_concurrency
SEND_TASKS = 2  # send tasks at once (the DAG's pool allows 4): one per core here
PROGRAM = "bench_dispatch"
AUDIENCE = "bench_dispatch_audience"
LIVE_CONSENT = f"marts.{AUDIENCE}_consent"  # stands in for dbt's consent view
RUN_ID = "bench-dispatch"
BASELINE_BATCH = -1  # apart from the sample's batches 0, 1, ...
CEILING_SECONDS = 3.0
CEILING_CLIENTS = 64


def bench_program():
    from datetime import timedelta

    from nurture.program import Program, Sender, email, sms

    return Program(
        name=PROGRAM, audience=AUDIENCE, goal="is_activated", sender=Sender(
            email="hello@nurture.example", name="Nurture"),
        steps=(email("welcome", after=timedelta(0)),
               email("welcome_one_at_a_time", after=timedelta(0), template="welcome"),
               sms("check_in", after=timedelta(0))))


def measure(contacts: int, say) -> dict:
    """The dispatch figures for a warehouse of `contacts` (one due email each)."""
    report: dict = {}
    email_n = min(contacts, EMAIL_SAMPLE)
    with warehouse.connect() as conn:
        _prepare(conn, contacts, baseline=min(contacts, BASELINE_SAMPLE),
                 sms=min(contacts, SMS_SAMPLE))
    outbox = settings.STATE_DIR / "bench" / "outbox.sqlite"
    outbox.unlink(missing_ok=True)
    with emulator_process(outbox) as url:
        from nurture.providers.sendgrid_hook import DEFAULT_PER_REQUEST

        report["emulator_ceiling_per_s"] = round(emulator_ceiling(url, DEFAULT_PER_REQUEST))
        report["emulator_ceiling_requests_per_s"] = round(emulator_ceiling(url, 1))
        say(f"  emulator_ceiling_per_s: {report['emulator_ceiling_per_s']} messages"
            f" ({DEFAULT_PER_REQUEST} a request; one a request:"
            f" {report['emulator_ceiling_requests_per_s']})")
        _set_faults(url, {"latency_s": LATENCY_S})
        env = _connections(url)
        email = _email_send_tasks(env, email_n)
        report["dispatch_email_per_s"] = round(email["sent"] / email["seconds"])
        report["dispatcher_peak_rss_mb"] = email["peak_rss_mb"]
        report["dispatch_email_detail"] = email | {"due_in_ledger": contacts}
        say(f"  dispatch_email_per_s: {report['dispatch_email_per_s']} ({email['sent']:,} "
            f"sent while {contacts:,} were due; peak {email['peak_rss_mb']} MB)")
        base = _in_process(_dispatch_child, env, "baseline", min(contacts, BASELINE_SAMPLE), 1)
        report["dispatch_email_baseline_per_s"] = round(base["sent"] / base["seconds"], 2)
        say(f"  dispatch_email_baseline_per_s: {report['dispatch_email_baseline_per_s']}")
        started = time.time()
        sms = _in_process(_dispatch_child, env, "sms", min(contacts, SMS_SAMPLE),
                          SMS_CONCURRENCY)
        arrivals = _arrivals(outbox, "sms", since=started)
        report["sms_rate_limit_per_s"] = SMS_RATE_PER_S
        report["dispatch_sms_per_s"] = round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]),
                                             2) if len(arrivals) > 1 else None
        report["sms_max_in_any_second"] = max_in_window(arrivals, 1.0)
        report["dispatch_sms_detail"] = sms
        say(f"  dispatch_sms_per_s: {report['dispatch_sms_per_s']} (limit {SMS_RATE_PER_S}, "
            f"at most {report['sms_max_in_any_second']} in any second)")
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("delete from nurture.message_ledger where program = %s", (PROGRAM,))
        cur.execute(f"drop table if exists marts.{AUDIENCE} cascade")
    return report


def consent_read_seconds(conn, contacts: int) -> float | None:
    """Seconds the send-time consent read (`Dispatch.live_consent`, dbt's view over the raw
    consent sources) takes for one chunk of `contacts` of the bench warehouse's contacts, as
    a send task at the DAG's concurrency reads it; None without dbt's models."""
    from nurture.dispatcher import Dispatch

    view = Dispatch.live_consent  # the default a send task reads
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s), to_regclass('marts.contacts')", (view,))
        if None in cur.fetchone():
            return None
        cur.execute("select contact_id from marts.contacts order by md5(contact_id) limit %s",
                    (contacts,))
        ids = [row[0] for row in cur]
        started = time.perf_counter()
        cur.execute(f"select contact_id, has_email_consent, has_sms_consent from {view}"
                    " where contact_id = any(%s)", (ids,))
        cur.fetchall()
        seconds = time.perf_counter() - started
    conn.rollback()
    return round(seconds, 2)


def describe(report: dict) -> str:
    """What the dispatch figures were measured on, for the table."""
    email, sms = report["dispatch_email_detail"], report["dispatch_sms_detail"]
    return (f"dispatch: {email['sent']:,} emails sent while {email['due_in_ledger']:,} were due"
            f" ({email['send_tasks']} send tasks of {email['concurrency']} threads,"
            f" {email['per_request']} messages a request,"
            f" {email['cpu_ms_per_message']} ms CPU each,"
            f" peak {email['peak_rss_mb']} MB); {sms['sent']:,} SMS at most"
            f" {report['sms_max_in_any_second']} in any second (limit"
            f" {report['sms_rate_limit_per_s']}); provider latency {LATENCY_S * 1000:.0f} ms")


def _prepare(conn, contacts: int, *, baseline: int, sms: int) -> None:
    """An audience of `contacts` and their due messages, planned in the DAG's batches."""
    from nurture import ledger
    from nurture.tasks import BATCH_SIZE

    ledger.ensure_schema(conn)
    with conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        cur.execute("delete from nurture.message_ledger where program = %s", (PROGRAM,))
        cur.execute(f"drop table if exists marts.{AUDIENCE} cascade")
        cur.execute(f"""
            create table marts.{AUDIENCE} as
            select 'bc' || n as contact_id, 'signup:bc' || n as enrollment_id,
                   now() as enrolled_at, 'person' || n || '@example.com' as email,
                   '+1415' || lpad(n::text, 7, '0') as phone, 'Name' || n as first_name,
                   'en' as locale, true as has_email_consent, true as has_sms_consent,
                   false as is_activated
              from generate_series(1, %s) as n""", (contacts,))
        cur.execute(f"create index on marts.{AUDIENCE} (contact_id)")
        # The send-time consent read (dbt's view in a real run) over the synthetic audience.
        cur.execute(f"create view {LIVE_CONSENT} as select contact_id, has_email_consent,"
                    f" has_sms_consent from marts.{AUDIENCE}")
        for step, channel, count, batch in (
                ("welcome", "email", contacts, f"(n - 1) / {BATCH_SIZE}"),
                ("welcome_one_at_a_time", "email", baseline, str(BASELINE_BATCH)),
                ("check_in", "sms", sms, "0")):
            recipient = "email" if channel == "email" else "phone"
            cur.execute(f"""
                insert into nurture.message_ledger (program, step, contact_id, enrollment_id,
                    channel, state, recipient, locale, due_at, batch_no, dag_run_id)
                select %s, %s, contact_id, enrollment_id, %s, 'planned', {recipient}, locale,
                       now(), {batch}, %s
                  from (select *, split_part(contact_id, 'c', 2)::int as n
                          from marts.{AUDIENCE}) as audience
                 where n <= %s""", (PROGRAM, step, channel, RUN_ID, count))
    conn.commit()


def _email_send_tasks(env: dict, limit: int) -> dict:
    """SEND_TASKS processes at once, each sending its share of the batches, as send tasks
    do in the DAG; the rate is over the span from the first start to the last end."""
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for first in range(SEND_TASKS):
        parent, child = context.Pipe()
        args = (env, "email", -(-limit // SEND_TASKS), CONCURRENCY, first, SEND_TASKS)
        processes.append(context.Process(target=_run_child,
                                         args=(child, _dispatch_child, args)))
        pipes.append(parent)
    for process in processes:
        process.start()
    results = [pipe.recv() if pipe.poll(3600) else {"error": "no answer within an hour"}
               for pipe in pipes]
    for process in processes:
        process.join()
    if failed := [r["error"] for r in results if "error" in r]:
        raise RuntimeError(f"an email send task failed: {failed[0]}")
    sent = sum(r["sent"] for r in results)
    from nurture.providers.sendgrid_hook import DEFAULT_PER_REQUEST

    return {"sent": sent, "send_tasks": SEND_TASKS, "concurrency": CONCURRENCY,
            "per_request": DEFAULT_PER_REQUEST,
            "seconds": round(max(r["ended"] for r in results)
                             - min(r["started"] for r in results), 2),
            "outcomes": {"sent": sent} if all(set(r["outcomes"]) <= {"sent"} for r in results)
            else [r["outcomes"] for r in results],
            "cpu_ms_per_message": round(sum(r["cpu_ms_per_message"] * r["sent"]
                                            for r in results) / max(sent, 1), 3),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}


def _dispatch_child(env: dict, kind: str, limit: int, concurrency: int, first_batch: int = 0,
                    stride: int = 1) -> dict:
    """In a fresh process: dispatch `limit` messages of one kind (batches first_batch,
    first_batch + stride, ...); time and peak memory."""
    os.environ.update(env)
    from nurture import dispatcher
    from nurture.providers import SendGridHook, TwilioHook
    from nurture.templates import TemplateSet

    program = bench_program()
    job = dispatcher.Dispatch(
        program=program, templates=TemplateSet(settings.TEMPLATES_DIR, "onboarding", "en"),
        email=SendGridHook(), sms=TwilioHook(), concurrency=concurrency,
        live_consent=LIVE_CONSENT)
    counts: dict[str, int] = {}
    with warehouse.connect() as conn:
        wall_started = time.time()
        started, cpu_started = time.perf_counter(), time.process_time()
        if kind == "baseline":
            counts = one_at_a_time(conn, job)
        else:
            batch_no = first_batch
            while sum(counts.values()) < limit:
                done = dispatcher.dispatch_batch(conn, job, dag_run_id=RUN_ID,
                                                 channel=kind, batch_no=batch_no)
                if not done:
                    break
                for outcome in done.values():
                    for label, n in outcome.items():
                        counts[label] = counts.get(label, 0) + n
                batch_no += stride
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sent = counts.get("sent", 0)
    # CPU per message: what the figure would be on an idle core, when others share this one.
    return {"sent": sent, "outcomes": counts, "seconds": round(seconds, 2),
            "started": wall_started, "ended": wall_started + seconds,
            "cpu_ms_per_message": round(1000 * cpu / max(sent, 1), 3),
            "concurrency": concurrency, "peak_rss_mb": round(peak_kb / 1024)}


def one_at_a_time(conn, job) -> dict[str, int]:
    """The baseline: claim one row, send it, settle it in its own commit, and again."""
    from nurture import dispatcher, ledger

    counts: dict[str, int] = {}
    while rows := ledger.claim_batch(conn, program=PROGRAM, dag_run_id=RUN_ID,
                                     channel="email", batch_no=BASELINE_BATCH, limit=1):
        contacts = dispatcher._audience_rows(conn, job, rows)
        conn.commit()
        outcome = dispatcher.deliver(job, rows[0], contacts.get(
            (rows[0]["contact_id"], rows[0]["enrollment_id"])))
        ledger.settle(conn, [outcome])
        label = "sent" if outcome.state == "sent" else ledger.reason_category(outcome.reason)
        counts[label] = counts.get(label, 0) + 1
    return counts


def _run_child(pipe, function, args) -> None:
    try:
        pipe.send(function(*args))
    except BaseException as err:  # reported by the parent, with what failed
        pipe.send({"error": f"{type(err).__name__}: {err}"})
        raise


def _in_process(function, *args) -> dict:
    """`function(*args)` in a freshly spawned interpreter (nothing inherited to inflate its
    memory); raises if it failed."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_run_child, args=(child, function, args))
    process.start()
    result = parent.recv() if parent.poll(3600) else {"error": "no answer within an hour"}
    process.join()
    if "error" in result:
        raise RuntimeError(f"{function.__name__}{args[1:]}: {result['error']}")
    return result


@contextmanager
def emulator_process(outbox: Path):
    """The emulator served by its own process, on a free port; yields its base URL."""
    from nurture.emulator.server import bound_socket
    from nurture.runner import EMULATOR_CREDENTIALS

    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_serve, args=(sock, str(outbox), EMULATOR_CREDENTIALS),
                              daemon=True)
    process.start()
    sock.close()
    try:
        _wait_until_up(url)
        yield url
    finally:
        process.terminate()
        process.join(10)


def _serve(sock, outbox: str, credentials: dict) -> None:
    from nurture.emulator.server import serve

    # It stands in for a provider on its own machine: not slowed by a busy one (if allowed).
    with contextlib.suppress(OSError):
        os.nice(-10)
    serve("127.0.0.1", 0, outbox, sock=sock, **credentials)


def _wait_until_up(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{url}/_emulator/faults", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _set_faults(url: str, plan: dict) -> None:
    import httpx

    httpx.post(f"{url}/_emulator/faults", json=plan, timeout=5).raise_for_status()


def _connections(url: str) -> dict[str, str]:
    """AIRFLOW_CONN_* for the emulator, the Twilio sender limited to SMS_RATE_PER_S."""
    from nurture import airflow_env
    from nurture.runner import (
        EMULATOR_CREDENTIALS,
        EMULATOR_MESSAGING_SERVICE,
        emulator_connections,
    )

    return {**emulator_connections(url), **airflow_env.connection_env(
        "twilio_default", conn_type="twilio", host=url,
        login=EMULATOR_CREDENTIALS["twilio_account_sid"],
        password=EMULATOR_CREDENTIALS["twilio_auth_token"],
        extra={"messaging_service_sid": EMULATOR_MESSAGING_SERVICE,
               "messages_per_second": SMS_RATE_PER_S})}


def emulator_ceiling(url: str, per_request: int = 1, *, seconds: float = CEILING_SECONDS,
                     clients: int = CEILING_CLIENTS) -> float:
    """Accepted messages per second at no latency, `per_request` to a request (as
    `SendGridHook.send_many` sends them), from `clients` concurrent keep-alive connections of
    one asyncio loop writing raw HTTP/1.1 (a client as cheap as can be, so the figure is the
    emulator's, not the client's)."""
    from urllib.parse import urlsplit

    from nurture.providers.sendgrid_hook import EmailMessage, batch_body
    from nurture.runner import EMULATOR_CREDENTIALS

    where = urlsplit(url)
    clients = max(1, min(clients, CEILING_CLIENTS * 2 // per_request))  # the same bytes in flight
    body = json.dumps(batch_body([EmailMessage(
        to=f"ceiling{n}@example.com", subject="Ceiling", text="Hello " * 100,
        html="<p>Hello</p>" * 100, from_email="hello@nurture.example", from_name="Nurture",
        custom_args={"ledger_id": f"ceiling-{n}"}) for n in range(per_request)])).encode()
    request = (f"POST /v3/mail/send HTTP/1.1\r\nHost: {where.netloc}\r\n"
               f"Authorization: Bearer {EMULATOR_CREDENTIALS['sendgrid_api_key']}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body

    async def client(deadline: float) -> int:
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        accepted = 0
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                accepted += per_request * head.startswith(b"HTTP/1.1 202")
        finally:
            writer.close()
        return accepted

    async def load() -> float:
        started = time.monotonic()
        done = await asyncio.gather(*(client(started + seconds) for _ in range(clients)))
        return sum(done) / (time.monotonic() - started)

    return asyncio.run(load())


def _arrivals(outbox: Path, channel: str, *, since: float) -> list[float]:
    """Arrival times (Unix seconds) of the messages of `channel` stored since `since`."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(outbox)) as conn:
        rows = conn.execute("select received_at from outbox where channel = ?",
                            (channel,)).fetchall()
    times = sorted(datetime.fromisoformat(at).timestamp() for (at,) in rows)
    return [t for t in times if t >= since]


def max_in_window(times: list[float], window: float) -> int:
    """The most of `times` (sorted) inside any half-open interval [t, t + window)."""
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most
