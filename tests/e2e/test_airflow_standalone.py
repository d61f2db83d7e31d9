"""`make airflow` as a marketer meets it: `nurture airflow` starts `airflow standalone` on
this project with airflow_settings.yaml loaded, prints the URL and login, and the onboarding
DAG can be triggered through the API the UI uses and runs to success on the scheduler."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nurture import seed, settings, warehouse
from nurture.emulator import OutboxStore

pytestmark = pytest.mark.e2e
STARTUP_S, RUN_S = 240, 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, *, method: str = "GET", body: dict | None = None, token: str | None = None):
    request = urllib.request.Request(url, method=method,
                                     data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def standalone(warehouse_url, airflow_db, fresh_onboarding):
    with warehouse.connect() as conn:
        seed.load(conn, seed.build())
    (settings.STATE_DIR / "outbox.sqlite").unlink(missing_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "airflow", "--port", str(port)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: call(f"{base}/api/v2/monitor/health")["scheduler"]["status"] ==
                 "healthy", STARTUP_S, "airflow standalone to become healthy")
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_a_marketer_triggers_onboarding_from_airflow(standalone, airflow_db: Path):
    base, process = standalone
    banner = process.stdout.readline()
    assert base.rsplit(":", 1)[1] in banner and "log in as admin" in banner
    password = json.loads(
        (airflow_db / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    assert password in banner
    token = call(f"{base}/auth/token", method="POST",
                 body={"username": "admin", "password": password})["access_token"]

    wait_for(lambda: call(f"{base}/api/v2/dags/onboarding", token=token), 120,
             "the DAG processor to parse dags/onboarding.py")
    call(f"{base}/api/v2/dags/onboarding", method="PATCH", body={"is_paused": False},
         token=token)
    run = call(f"{base}/api/v2/dags/onboarding/dagRuns", method="POST", token=token,
               body={"logical_date": None, "conf": {"dry_run": True}})

    def finished_runs():
        runs = call(f"{base}/api/v2/dags/onboarding/dagRuns", token=token)["dag_runs"]
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

    runs = {r["dag_run_id"]: r for r in wait_for(finished_runs, RUN_S, "the runs to finish")}
    assert {r["state"] for r in runs.values()} == {"success"}  # ours and the scheduled one
    summaries = {}
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select dag_run_id, summary from nurture.run_summaries"
                    " where dag_run_id = any(%s)", (list(runs),))
        summaries = dict(cur.fetchall())
    assert summaries[run["dag_run_id"]]["dry_run"] is True
    # Unpausing let the scheduler start the latest hourly run too: a real send, through the
    # connections airflow_settings.yaml defines, to the emulator `nurture airflow` started.
    (scheduled,) = [s for run_id, s in summaries.items() if run_id != run["dag_run_id"]]
    assert scheduled["sent"] > 0
    outbox = OutboxStore(settings.STATE_DIR / "outbox.sqlite").messages()
    assert len(outbox) == scheduled["sent"]


def test_provider_events_reach_the_receiver_mounted_in_the_api_server(standalone):
    """The emulator posts signed events to /nurture/webhooks/… on the API server, where the
    plugin's receiver verifies and stores them; an unsigned post is refused."""
    base, _ = standalone
    request = urllib.request.Request(f"{base}/nurture/webhooks/sendgrid", method="POST",
                                     data=b"[]", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403

    def stored_events():
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute("select count(*) from raw.sendgrid_events")
            return cur.fetchone()[0]

    assert wait_for(stored_events, 60, "SendGrid events from the emulator") > 0
