"""One run of a program's DAG through Airflow (`dag.test()`), in this process.

Used by `nurture run` and by the end-to-end tests: the DAG is loaded from `dags/` by
Airflow's own DagBag, so what runs is exactly what the scheduler would run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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


def run_program(program: str, *, dry_run: bool = False, skip_tasks: str | None = None,
                filters: dict[str, str] | None = None,
                options: dict[str, Any] | None = None) -> RunResult:
    """Run the DAG once; `filters` narrow it as the trigger form does (e.g. one webinar),
    `options` are the form's other fields (nurture.run_options: steps, send_limit,
    test_email...); `skip_tasks` (a regex of task ids) marks those tasks successful without
    running them — tests use it to guard a table they tampered with after dbt."""
    prepare_airflow()
    warehouse.export_env(warehouse.resolve_url())
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.DAGS_FOLDER))
    if bag.import_errors:
        raise NurtureError(f"dags/ has import errors: {bag.import_errors}")
    dag = bag.get_dag(program)
    if dag is None:
        raise NurtureError(f"no program {program!r}; known: {', '.join(sorted(bag.dag_ids))}")
    from nurture.run_options import OPTION_PARAMS

    narrowing = sorted(set(dag.params) - set(OPTION_PARAMS))
    unknown = set(filters or {}) - set(narrowing)
    if unknown:
        raise NurtureError(f"{program} cannot be narrowed by {', '.join(sorted(unknown))}; "
                           f"it takes: {', '.join(narrowing) or 'nothing'}")
    dag_run = dag.test(run_conf={**(options or {}), "dry_run": dry_run, **(filters or {})},
                       mark_success_pattern=skip_tasks)
    from nurture import summary

    with warehouse.connect() as conn:
        made = summary.load(conn, program=program, dag_run_id=dag_run.run_id)
    return RunResult(run_id=dag_run.run_id, state=str(dag_run.state), summary=made)


def emulator_connections(base_url: str, *, webhook_key: str | None = None) -> dict[str, str]:
    """AIRFLOW_CONN_* variables pointing the provider connections at the emulator on
    `base_url`; `webhook_key` is the SendGrid event verification key the receiver uses."""
    sendgrid = {"conn_type": "sendgrid", "host": base_url,
                "password": EMULATOR_CREDENTIALS["sendgrid_api_key"]}
    if webhook_key:
        sendgrid["extra"] = {"webhook_verification_key": webhook_key}
    return {
        **airflow_env.connection_env("sendgrid_default", **sendgrid),
        **airflow_env.connection_env(
            "twilio_default", conn_type="twilio", host=base_url,
            login=EMULATOR_CREDENTIALS["twilio_account_sid"],
            password=EMULATOR_CREDENTIALS["twilio_auth_token"],
            extra={"messaging_service_sid": EMULATOR_MESSAGING_SERVICE}),
        **airflow_env.connection_env("nurture_signing", conn_type="generic",
                                     password=LOCAL_SIGNING_KEY),
    }


@dataclass(frozen=True)
class LocalProviders:
    """The emulator and the webhook receiver it reports to, both in this process."""

    url: str  # the emulator: SendGrid and Twilio APIs
    receiver_url: str  # NURTURE_PUBLIC_URL while they run
    events: Any  # the emulator's ProviderEvents

    def wait_for_events(self, timeout: float = 30) -> None:
        """Block until every provider event so far has reached the receiver."""
        if not self.events.poster.wait_idle(timeout):
            raise NurtureError(f"provider events still pending after {timeout} s")


@contextlib.contextmanager
def emulated_providers(outbox_path=None, *, events: bool = True) -> Iterator[LocalProviders]:
    """Run the provider emulator and the webhook receiver here, and point this process's
    connections and NURTURE_PUBLIC_URL at them: sends go to the emulator, which posts signed
    events back to the receiver, which stores them in the warehouse."""
    from nurture.emulator import OutboxStore, create_app, new_event_signing_key
    from nurture.emulator.server import bound_socket, serve_app_in_thread
    from nurture.tokens import TokenSigner
    from nurture.webhooks import create_app as create_receiver

    url = warehouse.resolve_url()
    warehouse.export_env(url)
    private_key, public_key = new_event_signing_key()
    receiver_socket = bound_socket()
    receiver_url = f"http://127.0.0.1:{receiver_socket.getsockname()[1]}"
    receiver = create_receiver(
        warehouse_url=url, public_url=receiver_url, sendgrid_public_key=public_key,
        twilio_auth_token=EMULATOR_CREDENTIALS["twilio_auth_token"],
        token_signer=TokenSigner([LOCAL_SIGNING_KEY]),
    )
    emulator = create_app(OutboxStore(outbox_path or settings.STATE_DIR / "outbox.sqlite"),
                          **EMULATOR_CREDENTIALS, events_url=receiver_url if events else None,
                          sendgrid_event_key=private_key)
    with contextlib.ExitStack() as stack:
        stack.enter_context(serve_app_in_thread(receiver, name="webhook-receiver",
                                                sock=receiver_socket))
        base_url = stack.enter_context(serve_app_in_thread(emulator, name="provider-emulator"))
        stack.callback(emulator.state.events.close)
        env = {**emulator_connections(base_url), "NURTURE_PUBLIC_URL": receiver_url}
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield LocalProviders(url=base_url, receiver_url=receiver_url,
                                 events=emulator.state.events)
            emulator.state.events.poster.wait_idle(10)  # let the last events land
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
