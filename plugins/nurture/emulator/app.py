"""The emulator app: SendGrid's and Twilio's send endpoints behind one local HTTP server.

Handlers validate and shape responses; every accepted message goes through `accept`, the one
place to hang later behaviour: it hands them to `ProviderEvents`, which posts the providers'
signed events and callbacks to the webhook receiver when `events_url` is configured. Latency
and faults (`nurture.emulator.faults`) wrap the whole app, so they act before and after it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from nurture.emulator import sendgrid_api, twilio_api
from nurture.emulator.events import ProviderEvents
from nurture.emulator.faults import FaultInjector, FaultPlan, FaultState
from nurture.emulator.store import OutboxStore


class EmulatorApp(FastAPI):
    """FastAPI with the fault injector outermost: it needs the server's own `send` to break
    a connection, and must stamp a request's arrival before anything else runs."""

    async def __call__(self, scope, receive, send) -> None:
        await self.state.fault_injector(scope, receive, send, super().__call__)


def create_app(
    store: OutboxStore, *, sendgrid_api_key: str, twilio_account_sid: str, twilio_auth_token: str,
    events_url: str | None = None, sendgrid_event_key: str | None = None,
    faults: FaultPlan | None = None,
) -> FastAPI:
    """The emulator; with `events_url` (the receiver's base URL) it posts provider events there,
    SendGrid's signed with `sendgrid_event_key` (PEM, see `new_event_signing_key`); `faults`
    makes it slow or misbehave (changeable at runtime through `/_emulator/faults`)."""
    app = EmulatorApp(title="Nurture provider emulator", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.store = store
    app.state.sendgrid_api_key = sendgrid_api_key
    app.state.twilio_account_sid = twilio_account_sid
    app.state.twilio_auth_token = twilio_auth_token
    events = ProviderEvents(events_url=events_url, sendgrid_event_key=sendgrid_event_key,
                            twilio_account_sid=twilio_account_sid,
                            twilio_auth_token=twilio_auth_token)
    app.state.events = events
    app.state.faults = FaultState(faults)
    app.state.fault_injector = FaultInjector(app.state.faults)

    writer = GroupCommit(store)

    async def accept(records: list[dict[str, Any]]) -> None:
        """Record messages a provider accepted (SQLite off the event loop, many requests'
        in one commit), then queue the events the providers would report about them
        (posted later, in the background)."""
        await writer.add(records)
        events.after_send(records)

    app.state.accept = accept

    @app.post("/_emulator/inbound")
    async def inbound(request: Request) -> JSONResponse:
        """Emulator control: an SMS arrives From a number (Body STOP, START, HELP, ...)."""
        form: FormData = await request.form()
        sender, body = form.get("From"), form.get("Body")
        if not isinstance(sender, str) or not sender or not isinstance(body, str):
            return JSONResponse({"error": "From and Body are required"}, status_code=400)
        to = form.get("To")
        result = events.inbound(sender, body, to if isinstance(to, str) and to else None)
        return JSONResponse(result, status_code=202)

    @app.get("/_emulator/faults")
    async def show_faults() -> JSONResponse:
        return JSONResponse(app.state.faults.report())

    @app.post("/_emulator/faults")
    async def set_faults(request: Request) -> JSONResponse:
        """Emulator control: replace the fault plan (JSON, see nurture.emulator.faults)."""
        try:
            plan = FaultPlan.from_json(json.loads(await request.body() or b"{}"))
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        app.state.faults.set(plan)
        return JSONResponse(app.state.faults.report())

    @app.delete("/_emulator/faults")
    async def clear_faults() -> JSONResponse:
        app.state.faults.set(FaultPlan())
        return JSONResponse(app.state.faults.report())

    app.include_router(sendgrid_api.router)
    app.include_router(twilio_api.router)
    app.add_exception_handler(HTTPException, _provider_http_error)
    return app


class GroupCommit:
    """Requests arriving while a write is under way are stored together in the next one:
    a thousand requests a second cost a few dozen SQLite commits, not a thousand. A request
    is answered only once its records are committed."""

    def __init__(self, store: OutboxStore) -> None:
        self.store = store
        self.pending: list[dict[str, Any]] = []
        self.waiters: list[asyncio.Future] = []
        self.flushing: asyncio.Task | None = None

    async def add(self, records: list[dict[str, Any]]) -> None:
        done = asyncio.get_running_loop().create_future()
        self.pending.extend(records)
        self.waiters.append(done)
        if self.flushing is None:
            self.flushing = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            while self.waiters:
                batch, waiters = self.pending, self.waiters
                self.pending, self.waiters = [], []
                try:
                    await run_in_threadpool(self.store.add_many, batch)
                except Exception as err:  # each of these requests fails, as it would alone
                    for waiter in waiters:
                        if not waiter.done():  # its client may have gone
                            waiter.set_exception(err)
                else:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
        finally:
            self.flushing = None


async def _provider_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Unknown paths and methods answer in the shape of the provider that owns the path."""
    path = request.url.path
    if path.startswith(f"/{twilio_api.API_VERSION}/"):
        code, message = ((20004, "Method not allowed") if exc.status_code == 405
                         else (20404, f"The requested resource {path} was not found"))
        return twilio_api.twilio_error(exc.status_code, code, message)
    message = "resource not found" if exc.status_code == 404 else str(exc.detail)
    return sendgrid_api.generic_error(exc.status_code, message)
