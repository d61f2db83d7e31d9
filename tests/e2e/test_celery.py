"""The onboarding program under CeleryExecutor, as `make airflow-celery` runs it: Redis as the
broker, the metadata database in PostgreSQL, the scheduler, DAG processor, triggerer and API
server as their own processes, and two Celery workers taking one task at a time, so the send
batches of one run are dispatched by both. The emulator must receive each message once.

The demo gets 9 copies of each new sign-up, so its emails fill three batches of
BATCH_SIZE (four send tasks with the SMS batch). Only the run the test triggers
happens: the scheduler's own schedule is off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime

import httpx
import pytest

from nurture import seed, settings, warehouse
from nurture.emulator import OutboxStore

from .test_airflow_standalone import call, free_port, wait_for

pytestmark = pytest.mark.e2e
COPIES = 9  # of each new sign-up: about 650 emails, three batches
BATCH_SIZE = 300  # messages per send task (variable nurture_batch_size; 5,000 by default)
WORKERS = 2
STARTUP_S, RUN_S = 240, 420
# Each provider request takes this long: a send task lasts seconds, so while one worker is
# busy with a batch the next goes to the other (unslowed, a batch of many emails a request
# is done in a second, and one worker can take every batch in turn).
LATENCY_S = 2.0
# The test process's own Airflow settings (SQLite, LocalExecutor): not the cluster's.
NOT_INHERITED = ("AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__EXECUTOR",
                 "AIRFLOW__CORE__FERNET_KEY")


def with_copies_of_new_signups(data: seed.Dataset, copies: int) -> seed.Dataset:
    """The demo plus `copies` clones of each `new_signup` contact, each owed a welcome."""
    originals = {cid for cid, s in data.scenario_of.items() if s.name == "new_signup"}
    tables = data.tables
    for row in [r for r in tables["crm_contacts"] if r[0] in originals]:
        contact_id, email, phone = row[:3]
        tables["crm_contacts"] += [
            (f"{contact_id}-{n}", f"copy{n}.{email}", f"+35850{n:02d}{phone[-5:]}", *row[3:])
            for n in range(copies)]
    for table in ("consents", "signups"):
        for row in [r for r in tables[table] if r[1] in originals]:
            tables[table] += [(f"{row[0]}-{n}", f"{row[1]}-{n}", *row[2:])
                              for n in range(copies)]
    return data


@pytest.fixture(scope="module")
def grown_demo(warehouse_url, fresh_onboarding):
    with warehouse.connect() as conn, conn.cursor() as cur:
        seed.load(conn, with_copies_of_new_signups(seed.build(), COPIES))
        # A first run on this audience: not bounded by the smaller demo's last good count.
        cur.execute("delete from nurture.guard_results where program = 'onboarding'")
    yield
    with warehouse.connect() as conn, conn.cursor() as cur:
        seed.load(conn, seed.build())
        cur.execute("delete from nurture.guard_results where program = 'onboarding'")


@pytest.fixture(scope="module")
def cluster(grown_demo, state_dir):
    """`nurture airflow --executor celery` with two workers of one slot each; yields the API's
    base URL and a token."""
    (state_dir / "outbox.sqlite").unlink(missing_ok=True)
    home = state_dir / "airflow-celery"
    port, emulator_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    env.update(AIRFLOW_HOME=str(home), PYTHONUNBUFFERED="1",
               AIRFLOW_VAR_NURTURE_BATCH_SIZE=str(BATCH_SIZE),
               AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
               AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False")
    process = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "airflow", "--executor", "celery", "--workers",
         str(WORKERS), "--worker-concurrency", "1", "--port", str(port), "--emulator-port",
         str(emulator_port)],
        stdout=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        banner = process.stdout.readline()
        assert "log in as admin" in banner and "CeleryExecutor, 2 workers" in banner, banner
        wait_for(lambda: all(part["status"] == "healthy" for part in
                             call(f"{base}/api/v2/monitor/health").values()),
                 STARTUP_S, "the scheduler, DAG processor and triggerer to be healthy")
        wait_for(lambda: slow_down(f"http://127.0.0.1:{emulator_port}"), STARTUP_S,
                 "the emulator to take a latency")
        password = banner.split("log in as admin / ", 1)[1].split(" ", 1)[0]
        token = call(f"{base}/auth/token", method="POST",
                     body={"username": "admin", "password": password})["access_token"]
        yield base, token
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)


@pytest.fixture(scope="module")
def sent_run(cluster):
    """One triggered run of onboarding that sends: its id and its task instances."""
    base, token = cluster
    wait_for(lambda: call(f"{base}/api/v2/dags/onboarding", token=token), 120,
             "the DAG processor to parse dags/onboarding.py")
    run = call(f"{base}/api/v2/dags/onboarding/dagRuns", method="POST", token=token,
               body={"logical_date": None, "conf": {"dry_run": False}})
    runs = f"{base}/api/v2/dags/onboarding/dagRuns/{run['dag_run_id']}"
    finished = wait_for(lambda: (r := call(runs, token=token))["state"] in ("success", "failed")
                        and r, RUN_S, "the run to finish")
    instances = call(f"{runs}/taskInstances?limit=100", token=token)["task_instances"]
    return finished, instances


def test_the_run_succeeds_with_its_batches_sent_by_both_workers(sent_run):
    run, instances = sent_run
    assert run["state"] == "success", {ti["task_id"]: ti["state"] for ti in instances}
    sends = [ti for ti in instances if ti["task_id"] == "send"]
    assert len(sends) >= 3 and {ti["state"] for ti in sends} == {"success"}
    workers = Counter(ti["hostname"].split("@")[0] for ti in sends)
    assert set(workers) == {f"worker{n}" for n in range(1, WORKERS + 1)}, workers
    print(f"send tasks per worker: {dict(workers)}; at the same time: "
          f"{overlapping(sends)} pair(s)")


def test_the_emulator_received_each_message_exactly_once(sent_run):
    run, _ = sent_run
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select ledger_id::text, step, contact_id from nurture.message_ledger"
                    " where program = 'onboarding' and dag_run_id = %s and state = 'sent'",
                    (run["dag_run_id"],))
        sent = {ledger_id: (step, contact) for ledger_id, step, contact in cur}
    outbox = OutboxStore(settings.STATE_DIR / "outbox.sqlite").messages()
    assert len(sent) > BATCH_SIZE  # more than one batch
    # Emails share requests (and SendGrid's message id): each carries its ledger id.
    received = Counter(sent.get(m["ledger_id"], ("not in the ledger", m["recipient"]))
                       for m in outbox)
    assert [key for key, times in received.items() if times > 1] == []
    assert len(outbox) == len(sent) and set(received) == set(sent.values())


def slow_down(emulator: str) -> bool:
    try:
        return httpx.post(f"{emulator}/_emulator/faults", json={"latency_s": LATENCY_S},
                          timeout=5).is_success
    except httpx.HTTPError:  # not up yet
        return False


def overlapping(instances: list[dict]) -> int:
    """Pairs of task instances, on different workers, that ran at the same time."""
    spans = [(ti["hostname"], datetime.fromisoformat(ti["start_date"]),
              datetime.fromisoformat(ti["end_date"])) for ti in instances]
    return sum(1 for i, (host_a, start_a, end_a) in enumerate(spans)
               for host_b, start_b, end_b in spans[i + 1:]
               if host_a != host_b and start_a < end_b and start_b < end_a)
