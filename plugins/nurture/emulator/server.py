"""Running the emulator: in the foreground (`make run`) or in a thread (tests, e2e).

The thread variant binds its socket itself before uvicorn starts, so the port is known and
free with no race, and it returns only once the server answers requests.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from nurture.emulator.app import create_app
from nurture.emulator.faults import FaultPlan
from nurture.emulator.store import OutboxStore

STARTUP_TIMEOUT_S = 5.0


def serve(
    host: str, port: int, store_path: Path | str, *,
    sendgrid_api_key: str, twilio_account_sid: str, twilio_auth_token: str,
    events_url: str | None = None, sendgrid_event_key: str | None = None,
    faults: FaultPlan | None = None, sock: socket.socket | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM); on `sock` when given (already bound)."""
    app = create_app(OutboxStore(Path(store_path)), sendgrid_api_key=sendgrid_api_key,
                     twilio_account_sid=twilio_account_sid, twilio_auth_token=twilio_auth_token,
                     events_url=events_url, sendgrid_event_key=sendgrid_event_key,
                     faults=faults)
    try:
        if sock is not None:
            uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                          backlog=4096)).run(sockets=[sock])
        else:
            uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="off")
    finally:
        app.state.events.close()


def bound_socket() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1, reserved until served."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def run_in_thread(
    store_path: Path | str, *,
    sendgrid_api_key: str, twilio_account_sid: str, twilio_auth_token: str,
    events_url: str | None = None, sendgrid_event_key: str | None = None,
    faults: FaultPlan | None = None,
) -> Iterator[str]:
    """Serve on 127.0.0.1 on a free port in a daemon thread; yields the base URL."""
    app = create_app(OutboxStore(Path(store_path)), sendgrid_api_key=sendgrid_api_key,
                     twilio_account_sid=twilio_account_sid, twilio_auth_token=twilio_auth_token,
                     events_url=events_url, sendgrid_event_key=sendgrid_event_key,
                     faults=faults)
    try:
        with serve_app_in_thread(app, name="provider-emulator") as url:
            yield url
    finally:
        app.state.events.close()


@contextmanager
def serve_app_in_thread(app: FastAPI, *, name: str = "asgi-app",
                        sock: socket.socket | None = None) -> Iterator[str]:
    """Any ASGI app on 127.0.0.1 in a daemon thread; yields the base URL. Pass a bound
    `sock` when the app must know its own URL before it starts (see `bound_socket`)."""
    sock = sock or bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"{name}-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} failed to start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)
        sock.close()
