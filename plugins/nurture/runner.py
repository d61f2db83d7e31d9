"""One run of a program's DAG through Airflow (`dag.test()`), in this process.

Used by `nurture run` and by the end-to-end tests: the DAG is loaded from `dags/` by
Airflow's own DagBag, so what runs is exactly what the scheduler would run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from nurture import airflow_env, settings, warehouse
from nurture.exceptions import NurtureError

EMULATOR_CREDENTIALS = {
    "sendgrid_api_key": "SG.local-emulator-key",
    "twilio_account_sid": "AC00000000000000000000000000000000",
    "twilio_auth_token": "local-emulator-token",
}
EMULATOR_MESSAGING_SERVICE = "MG00000000000000000000000000000000"
# Local only, as in airflow_settings.yaml; production sets its own nurture_signing key.
LOCAL_SIGNING_KEY = "zFDwKSyF1ReTmWLBxhd5f5VYyxYUafwys7sHJ6ZisWs="
LOCAL_RECEIVER_URL = "http://127.0.0.1:8000"  # where `nurture webhooks` listens by default


@dataclass(frozen=True)
class RunResult:
    run_id: str
    state: str
    summary: dict | None


def prepare_airflow() -> None:
    """Airflow environment, metadata database and airflow_settings.yaml, once per home."""
    home = airflow_env.configure()
    marker = home / ".settings-loaded"
    if not marker.exists():
        airflow_env.migrate()
        airflow_env.load_settings()
        marker.touch()


def run_program(program: str, *, dry_run: bool = False,
                skip_tasks: str | None = None) -> RunResult:
    """Run the DAG once; `skip_tasks` (a regex of task ids) marks those tasks successful
    without running them — tests use it to guard a table they tampered with after dbt."""
    prepare_airflow()
    warehouse.export_env(warehouse.resolve_url())
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.DAGS_FOLDER))
    if bag.import_errors:
        raise NurtureError(f"dags/ has import errors: {bag.import_errors}")
    dag = bag.get_dag(program)
    if dag is None:
        raise NurtureError(f"no program {program!r}; known: {', '.join(sorted(bag.dag_ids))}")
    dag_run = dag.test(run_conf={"dry_run": dry_run}, mark_success_pattern=skip_tasks)
    from nurture import summary

    with warehouse.connect() as conn:
        made = summary.load(conn, program=program, dag_run_id=dag_run.run_id)
    return RunResult(run_id=dag_run.run_id, state=str(dag_run.state), summary=made)


@contextlib.contextmanager
def emulated_providers(outbox_path=None) -> Iterator[str]:
    """Run the provider emulator here and point this process's connections at it."""
    from nurture.emulator import run_in_thread

    outbox_path = outbox_path or settings.STATE_DIR / "outbox.sqlite"
    with run_in_thread(outbox_path, **EMULATOR_CREDENTIALS) as base_url:
        env = {
            **airflow_env.connection_env(
                "sendgrid_default", conn_type="sendgrid", host=base_url,
                password=EMULATOR_CREDENTIALS["sendgrid_api_key"]),
            **airflow_env.connection_env(
                "twilio_default", conn_type="twilio", host=base_url,
                login=EMULATOR_CREDENTIALS["twilio_account_sid"],
                password=EMULATOR_CREDENTIALS["twilio_auth_token"],
                extra={"messaging_service_sid": EMULATOR_MESSAGING_SERVICE}),
            **airflow_env.connection_env("nurture_signing", conn_type="generic",
                                         password=LOCAL_SIGNING_KEY),
            "NURTURE_PUBLIC_URL": os.environ.get("NURTURE_PUBLIC_URL") or LOCAL_RECEIVER_URL,
        }
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield base_url
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
