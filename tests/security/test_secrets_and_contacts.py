"""Secrets come only from connections and stay there; contacts' addresses stay out of logs.

Onboarding runs for real (Airflow dag.test(), dbt, the guard, the SDKs against the
emulator, events back through the receiver) with its output and log records captured. Then
the logs, Airflow's task log files, every XCom value of the run, the ledger and the run
summary are searched for the provider API key, the Twilio auth token and the signing key,
and the logs and XComs also for every contact's email address and phone number. The emulator
stands in for the providers, so what it logs about the requests it received is its own
(a provider sees the recipient) and is left out of the search.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest

from nurture import ledger, runner, seed, warehouse
from nurture.runner import EMULATOR_CREDENTIALS, LOCAL_SIGNING_KEY
from nurture.webhooks.storage import PROVIDER_EVENT_TABLES

pytestmark = pytest.mark.e2e

SECRETS = {
    "SendGrid API key": EMULATOR_CREDENTIALS["sendgrid_api_key"],
    "Twilio auth token": EMULATOR_CREDENTIALS["twilio_auth_token"],
    "signing key": LOCAL_SIGNING_KEY,
    "signing key (unpadded)": LOCAL_SIGNING_KEY.rstrip("="),
}
PROVIDER_STAND_INS = ("nurture.emulator", "uvicorn")  # the providers' side, not ours


def execute(sql: str, params=None) -> list[tuple]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


class Records(logging.Handler):
    """Every log record of the run, formatted with its arguments, from every logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(PROVIDER_STAND_INS):
            return
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not fit its message
            text = f"{record.msg} {record.args}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@pytest.fixture(scope="module")
def run(warehouse_url, airflow_db, tmp_path_factory):
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        cur.execute("delete from nurture.message_ledger where program = 'onboarding'")
        cur.execute("truncate " + ", ".join(PROVIDER_EVENT_TABLES))
        seed.load(conn, seed.build())
    records = Records()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    log_files_before = _log_files()
    outbox = tmp_path_factory.mktemp("secrets") / "outbox.sqlite"
    try:
        with runner.emulated_providers(outbox) as providers:
            result = runner.run_program("onboarding")
            providers.wait_for_events()
    finally:
        root.removeHandler(records)
        root.setLevel(previous_level)
    task_logs = [path.read_text(errors="replace") for path in _log_files() - log_files_before]
    return {"result": result, "logs": "\n".join(records.lines), "task_logs": task_logs}


def _log_files() -> set[Path]:
    folder = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    return {path for path in folder.rglob("*") if path.is_file()} if folder.exists() else set()


def xcom_values(run_id: str) -> list[str]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel.key, XComModel.value).filter(
            XComModel.dag_id == "onboarding", XComModel.run_id == run_id).all()
    return [f"{key}={json.dumps(value, default=str)}" for key, value in rows]


def lines_with(value: str, text: str) -> list[str]:
    """The lines of `text` holding `value`, shortened: what the assertion shows."""
    return [line[:300] for line in text.splitlines() if value in line][:3]


def contact_addresses() -> set[str]:
    emails_and_phones = execute("select email, phone from raw.crm_contacts")
    return {value for row in emails_and_phones for value in row if value and len(value) > 5}


def test_the_run_sent_messages(run):
    """Otherwise the searches below would prove nothing."""
    assert run["result"].state == "success"
    assert execute("select count(*) from nurture.message_ledger where program = 'onboarding'"
                   " and state = 'sent'")[0][0] > 50
    assert len(run["logs"]) > 1000  # the run's log records were captured


@pytest.mark.parametrize("secret", SECRETS)
def test_no_secret_in_logs_xcom_ledger_or_summary(run, secret):
    value = SECRETS[secret]
    places = {
        "log records": run["logs"],
        "task log files": "\n".join(run["task_logs"]),
        "XCom": "\n".join(xcom_values(run["result"].run_id)),
        "ledger": "\n".join(str(row) for row in execute(
            "select l::text from nurture.message_ledger l where program = 'onboarding'")),
        "run summaries": "\n".join(str(row) for row in execute(
            "select s::text from nurture.run_summaries s where program = 'onboarding'")),
    }
    assert {place: lines_with(value, text) for place, text in places.items()} == \
        {place: [] for place in places}


def test_no_contact_email_or_phone_in_logs_or_xcom(run):
    addresses = contact_addresses()
    assert len(addresses) > 300
    texts = {"log records": run["logs"], "task log files": "\n".join(run["task_logs"]),
             "XCom": "\n".join(xcom_values(run["result"].run_id))}
    leaks = {place: [line for a in sorted(addresses) for line in lines_with(a, text)][:5]
             for place, text in texts.items()}
    assert leaks == {place: [] for place in texts}


def test_nothing_that_looks_like_an_address_is_logged(run):
    """Beyond the demo's contacts: anything shaped like an email or an E.164 number, other
    than the program's sender."""
    sender = "hello@nurture.example"
    # (an address, not the user:password@host of a URL some library's help text shows)
    found = set(re.findall(r"(?<![\w.+:/-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+", run["logs"]))
    found -= {sender}
    found |= set(re.findall(r"\+[1-9]\d{7,14}\b", run["logs"]))
    assert [line for value in sorted(found) for line in lines_with(value, run["logs"])][:5] \
        == []
