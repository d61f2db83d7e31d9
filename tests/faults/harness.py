"""Faults injected around the real components, for the scenarios of tests/faults.

- `RecordingPoster`: the emulator's own event poster, keeping a record of every request it
  was asked to post (the invariants compare it with the raw tables); it can post each one
  twice, or hold them and post them later in another order.
- `SendGate`: ASGI middleware in front of the emulator that lets a number of send requests
  through, then holds the rest (read whole, so the provider "has" them) until opened: a
  worker can be killed while its requests are in flight.
- `RestartableReceiver`: the webhook receiver on a fixed port, stopped and started again.
- `warehouse_outage`: the embedded PostgreSQL stopped and started on the same port.
- `faulty_providers`: all of it wired like `runner.emulated_providers`, whose connections
  and NURTURE_PUBLIC_URL it sets the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from nurture import runner, warehouse
from nurture.emulator import OutboxStore, create_app, new_event_signing_key
from nurture.emulator.events import Poster
from nurture.emulator.server import serve_app_in_thread
from nurture.tokens import TokenSigner
from nurture.webhooks import create_app as create_receiver

SEND_PATHS = ("/v3/mail/send", "/Messages.json")
WORKER = Path(__file__).with_name("worker.py")


class RecordingPoster(Poster):
    """Posts as the emulator does, and remembers what it was asked to post.

    `duplicate`: every request is delivered twice (a provider retrying after a lost 200).
    `hold()` / `release(order)`: keep requests back, then post them in `order` (e.g.
    `reversed`). Retries default to a patient schedule (about 30 s in all), as SendGrid
    retries for a day: an outage of the receiver must not look like a lost event.
    """

    def __init__(self, *, duplicate: bool = False, retries: int = 7, **kwargs: Any) -> None:
        super().__init__(retries=retries, **kwargs)
        self.duplicate = duplicate
        self.posted: list[tuple[str, bytes]] = []
        self._held: list[tuple] | None = None
        self._record_lock = threading.Lock()

    def submit(self, url, body, headers, what, sign=None) -> None:
        with self._record_lock:
            self.posted.append((url, body))
            if self._held is not None:
                self._held.append((url, body, headers, what, sign))
                return
        self._deliver((url, body, headers, what, sign))

    def hold(self) -> None:
        with self._record_lock:
            self._held = []

    def release(self, order: Callable[[list], Iterable] = reversed) -> None:
        with self._record_lock:
            held, self._held = self._held or [], None
        for job in order(held):
            self._deliver(job)

    def _deliver(self, job: tuple) -> None:
        super().submit(*job)
        if self.duplicate:
            url, body, headers, what, sign = job
            super().submit(url, body, headers, f"{what} (again)", sign)


class SendGate:
    """Lets `hold_after(n)` send requests through, then holds the others until `open()`.

    A held request is read whole before it waits, so once opened the emulator accepts it
    even if its client died meanwhile: the provider got it and the answer was lost.
    """

    def __init__(self, app) -> None:
        self.app = app
        self.limit: int | None = None
        self.paths = SEND_PATHS
        self.passed = self.held = 0
        self._open = threading.Event()
        self._lock = threading.Lock()

    def hold_after(self, sends: int, paths: tuple[str, ...] = SEND_PATHS) -> None:
        """Hold send requests (to paths ending so) after the first `sends`."""
        with self._lock:
            self.limit, self.paths, self.passed, self.held = sends, paths, 0, 0
            self._open.clear()

    def open(self) -> None:
        self.limit = None
        self._open.set()

    async def __call__(self, scope, receive, send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"].endswith(self.paths) and self.limit is not None):
            return await self.app(scope, receive, send)
        with self._lock:
            admitted = self.passed < self.limit
            self.passed += admitted
            self.held += not admitted
        if admitted:
            return await self.app(scope, receive, send)
        messages = [await receive()]
        while messages[-1].get("more_body"):
            messages.append(await receive())
        while not self._open.is_set():
            await asyncio.sleep(0.02)

        async def replay():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        await self.app(scope, replay, send)


class RestartableReceiver:
    """The webhook receiver on one port for its whole life, so the emulator's events URL
    stays valid across a restart (each start is a new app, as a new process would be)."""

    def __init__(self, make_app: Callable[[], Any]) -> None:
        self.make_app = make_app
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._serving: contextlib.ExitStack | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self._serving = contextlib.ExitStack()
        self._serving.enter_context(serve_app_in_thread(self.make_app(), name="receiver",
                                                        sock=sock))

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.close()
            self._serving = None

    def restart(self, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@dataclass
class Providers:
    url: str  # the emulator
    receiver: RestartableReceiver
    poster: RecordingPoster
    gate: SendGate
    outbox: OutboxStore
    signer: TokenSigner

    def wait_for_events(self, timeout: float = 60) -> None:
        if not self.poster.wait_idle(timeout):
            raise TimeoutError(f"provider events still pending after {timeout} s")


@contextlib.contextmanager
def faulty_providers(outbox_path: Path, poster: RecordingPoster | None = None
                     ) -> Iterator[Providers]:
    """The emulator (behind a SendGate, posting through `poster`) and a restartable
    receiver; this process's provider connections and NURTURE_PUBLIC_URL point at them."""
    url = warehouse.resolve_url()
    private_key, public_key = new_event_signing_key()
    signer = TokenSigner([runner.LOCAL_SIGNING_KEY])
    receiver = RestartableReceiver(lambda: create_receiver(
        warehouse_url=url, public_url=receiver.url, sendgrid_public_key=public_key,
        twilio_auth_token=runner.EMULATOR_CREDENTIALS["twilio_auth_token"],
        token_signer=signer))
    outbox = OutboxStore(outbox_path)
    emulator = create_app(outbox, **runner.EMULATOR_CREDENTIALS, events_url=receiver.url,
                          sendgrid_event_key=private_key)
    poster = poster or RecordingPoster()
    emulator.state.events.poster = poster
    gate = SendGate(emulator)
    receiver.start()
    try:
        with serve_app_in_thread(gate, name="faulty-emulator") as base_url, mock.patch.dict(
                os.environ, {**runner.emulator_connections(base_url),
                             "NURTURE_PUBLIC_URL": receiver.url}):
            try:
                yield Providers(base_url, receiver, poster, gate, outbox, signer)
                gate.open()
                poster.wait_idle(60)
            finally:
                poster.close()
    finally:
        receiver.stop()


def warehouse_outage(down_for: float = 0.5) -> None:
    """Stop the embedded warehouse, wait, start it again on the same port: every open
    connection is cut, new ones fail until it is back."""
    server = warehouse.EmbeddedWarehouse(Path(os.environ["NURTURE_STATE_DIR"]) / "warehouse")
    port = int(server.port_file.read_text())
    server.stop()
    time.sleep(down_for)
    server.start(port=port)


def start_worker(program: str, log_path: Path, *, skip_tasks: str) -> subprocess.Popen:
    """One run of the program's DAG in its own process (a worker), in its own process
    group so it can be killed whole."""
    import nurture

    # The package this process runs, whatever the worker's interpreter would find first.
    plugins = str(Path(nurture.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, (plugins, os.environ.get("PYTHONPATH"))))
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, str(WORKER), program, skip_tasks],
                            env={**os.environ, "PYTHONPATH": path}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def emails_per_request(n: int) -> Iterator[None]:
    """SendGrid requests carry at most `n` emails (the connection's extra), for this block
    and the workers it starts: a scenario that counts requests decides how many emails each
    of them holds."""
    from nurture.airflow_env import connection_env_with_extra

    with mock.patch.dict(os.environ, connection_env_with_extra(
            "sendgrid_default", personalizations_per_request=n)):
        yield


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str,
               process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker ended (code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout} s")
        time.sleep(0.05)
