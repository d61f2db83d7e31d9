"""A minimal stand-in for a provider that misbehaves, for what the emulator cannot do.

The emulator answers like a healthy SendGrid/Twilio. Some properties need a provider that is
slow (the dispatcher's concurrency, the hooks' timeouts) or broken (a 5xx after the request
arrived). This server answers every POST after `delay` seconds, either like a successful send
(`status=None`: SendGrid's 202 with X-Message-Id, Twilio's 201 with a Message SID) or with
the given error status in the provider's error shape. It counts requests and the most it
served at once.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TWILIO_SID = "AC" + "0" * 32
TWILIO_SERVICE = "MG" + "0" * 32


class StubProvider:
    def __init__(self, *, status: int | None = None, delay: float = 0.0,
                 cut_off: bool = False) -> None:
        self.status = status
        self.delay = delay
        self.cut_off = cut_off  # the answer promises more than it sends, then the line drops
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._release = threading.Event()  # wakes sleeping handlers at shutdown
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with stub._lock:
                    stub.requests += 1
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    stub._release.wait(stub.delay)
                    status, headers, body = stub._answer(self.path)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1
                self.send_response(status)
                length = len(body) + (100 if stub.cut_off else 0)
                self.close_connection = stub.cut_off
                for key, value in {**headers, "Content-Length": str(length)}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def _answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        twilio = path.endswith("/Messages.json")
        if self.status is None and twilio:
            resource = {"sid": "SM" + secrets.token_hex(16), "status": "accepted"}
            return 201, {"Content-Type": "application/json"}, json.dumps(resource).encode()
        if self.status is None:
            return 202, {"X-Message-Id": secrets.token_urlsafe(16)}, b""
        if twilio:
            error = {"code": 20500, "message": "Internal Server Error", "status": self.status}
        else:
            error = {"errors": [{"field": None, "message": "Internal Server Error",
                                 "help": None}]}
        return self.status, {"Content-Type": "application/json"}, json.dumps(error).encode()

    @contextmanager
    def running(self) -> Iterator[StubProvider]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._release.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)


def closed_port_url() -> str:
    """A URL on which nothing listens: connecting is refused at once, nothing is sent."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def connection_env(*, sendgrid_url: str, twilio_url: str,
                   sendgrid_extra: dict | None = None) -> dict[str, str]:
    """AIRFLOW_CONN_* for the default connections, pointed at the given base URLs."""
    from nurture.airflow_env import connection_env as env

    return {
        **env("sendgrid_default", conn_type="sendgrid", host=sendgrid_url,
              password="SG.stub-key", extra=sendgrid_extra or {}),
        **env("twilio_default", conn_type="twilio", host=twilio_url, login=TWILIO_SID,
              password="stub-token", extra={"messaging_service_sid": TWILIO_SERVICE}),
    }
