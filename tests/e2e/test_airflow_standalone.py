"""`make airflow` as a marketer meets it, in a real browser (Debian's headless Chromium,
driven by Playwright): `nurture airflow` starts `airflow standalone` on this project with
airflow_settings.yaml loaded and prints the URL and login; the marketer signs in, opens
onboarding's trigger form, sees its fields, triggers it as it comes (a dry run) and sees the
run succeed, while the scheduled run sends; Nurture's own page lists the programs and their
last runs, and each run has a "Nurture summary" tab.

Screenshots are kept under .nurture/artifacts/airflow-ui/ (the path is printed).
"""

from __future__ import annotations

import json
import os
import re
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
CHROMIUM = Path("/usr/bin/chromium")  # `make chromium`; never `playwright install`
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = settings.PROJECT_ROOT / ".nurture" / "artifacts" / "airflow-ui"


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


@pytest.fixture(scope="module")
def login(standalone, airflow_db: Path) -> dict:
    base, process = standalone
    banner = process.stdout.readline()
    assert base.rsplit(":", 1)[1] in banner and "log in as admin" in banner
    password = json.loads(
        (airflow_db / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    assert password in banner
    token = call(f"{base}/auth/token", method="POST",
                 body={"username": "admin", "password": password})["access_token"]
    return {"username": "admin", "password": password, "token": token}


@pytest.fixture(scope="module")
def browser(standalone, login, request):
    """A Chromium page signed in to Airflow through its login form."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's package")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write(f" [screenshots: {ARTIFACTS}] ")
    base, _ = standalone
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                              headless=True)
        page = chromium.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        page.goto(f"{base}/")
        page.get_by_label("Username").fill(login["username"])
        page.get_by_label("Password").fill(login["password"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")
        yield page
        chromium.close()


def screenshot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_marketer_dry_runs_onboarding_from_the_trigger_form(standalone, login, browser):
    base, _ = standalone
    page = browser
    wait_for(lambda: call(f"{base}/api/v2/dags/onboarding", token=login["token"]), 120,
             "the DAG processor to parse dags/onboarding.py")
    page.goto(f"{base}/dags/onboarding")
    screenshot(page, "01-onboarding-dag")
    page.get_by_role("button", name="Trigger").first.click()
    form = page.get_by_role("dialog").filter(has_text="Trigger Dag - onboarding")
    form.get_by_text("This run", exact=True).click()
    assert form.get_by_role("checkbox", name="Dry run").is_checked()  # a mis-click mails nobody
    for field in ("Steps", "Send at most"):
        assert form.get_by_text(field, exact=True).is_visible()
    assert form.get_by_text("scheduled runs send", exact=False).is_visible()
    screenshot(page, "02-trigger-form-this-run")
    form.get_by_text("Send a test to yourself", exact=True).click()
    for field in ("Test email address", "Test phone number", "Sample contact id"):
        assert form.get_by_text(field, exact=True).is_visible()
    screenshot(page, "03-trigger-form-test-send")

    # Triggered as the form comes (and "Unpause onboarding on trigger" ticked): a dry run,
    # and the scheduler starts the latest hourly run too, which sends.
    with page.expect_response(lambda r: r.url.endswith("/dags/onboarding/dagRuns")
                              and r.request.method == "POST") as triggered:
        form.get_by_role("button", name="Trigger").click()
    assert triggered.value.ok, triggered.value.text()
    run_id = triggered.value.json()["dag_run_id"]

    def finished_runs():  # ours and a scheduled one (two, if an hour turned meanwhile)
        runs = call(f"{base}/api/v2/dags/onboarding/dagRuns", token=login["token"])["dag_runs"]
        done = all(r["state"] in ("success", "failed") for r in runs)
        return runs if done and {r["run_type"] for r in runs} == {"manual", "scheduled"} \
            else None

    runs = {r["dag_run_id"]: r for r in wait_for(finished_runs, RUN_S, "the runs to finish")}
    assert {r["state"] for r in runs.values()} == {"success"}  # ours and the scheduled one
    page.goto(f"{base}/dags/onboarding/runs/{run_id}")
    page.get_by_text("Success", exact=True).first.wait_for()
    assert re.search(re.escape(run_id) + r"\s+Success", page.locator("body").inner_text())
    screenshot(page, "04-dry-run-succeeded")

    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select dag_run_id, summary from nurture.run_summaries"
                    " where dag_run_id = any(%s)", (list(runs),))
        summaries = dict(cur.fetchall())
    assert summaries[run_id]["dry_run"] is True and summaries[run_id]["sent"] == 0
    # The scheduled run: a real send, through the connections airflow_settings.yaml
    # defines, to the emulator `nurture airflow` started.
    scheduled = [s["sent"] for other, s in summaries.items() if other != run_id]
    assert sum(scheduled) > 0
    outbox = OutboxStore(settings.STATE_DIR / "outbox.sqlite").messages()
    assert len(outbox) == sum(scheduled)  # the dry run sent nothing


def test_what_a_run_did_is_on_its_nurture_summary_tab_and_nurtures_page(standalone, login,
                                                                        browser):
    base, _ = standalone
    page = browser
    runs = call(f"{base}/api/v2/dags/onboarding/dagRuns?run_type=manual",
                token=login["token"])["dag_runs"]
    run_id = runs[0]["dag_run_id"]
    page.goto(f"{base}/dags/onboarding/runs/{run_id}")
    page.get_by_text("Nurture summary", exact=True).click()
    summary = page.frame_locator("iframe").first
    summary.get_by_text("dry run").first.wait_for()
    text = summary.locator("body").inner_text()
    assert "nothing was sent or recorded" in text and "Guard: passed on" in text
    for step in ("welcome", "setup_tips", "check_in"):
        assert step in text
    screenshot(page, "05-run-nurture-summary-tab")

    page.get_by_role("link", name="Nurture", exact=True).click()
    programs = page.frame_locator("iframe").first
    programs.get_by_role("heading", name="Programs").wait_for()
    for program in ("onboarding", "webinar", "satisfaction_survey", "nurture"):
        assert programs.get_by_role("heading", name=program, exact=True).is_visible()
    assert programs.get_by_role("link", name=run_id).is_visible()
    screenshot(page, "06-nurture-programs")

    programs.get_by_role("link", name="Preview a message").click()
    preview = page.frame_locator("iframe").first
    preview.get_by_label("Program").select_option("onboarding")
    preview.get_by_role("button", name="Choose").click()
    contact = preview.locator("#contacts option").first.get_attribute("value")
    preview.get_by_label("Contact id").fill(contact)  # one the page suggests
    preview.get_by_role("button", name="Preview").click()
    preview.get_by_text("Subject:").wait_for()
    assert preview.get_by_title("HTML part").is_visible()  # the email, in a sandboxed frame
    screenshot(page, "07-nurture-preview")


def test_nurtures_pages_need_an_airflow_login(standalone):
    base, _ = standalone
    request = urllib.request.Request(f"{base}/nurture/ui/")
    opener = urllib.request.build_opener(_NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(request, timeout=30)
    assert answer.value.code == 303
    assert answer.value.headers["location"].startswith("/auth/login")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


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
