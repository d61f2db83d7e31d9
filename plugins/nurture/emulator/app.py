"""The emulator app: SendGrid's and Twilio's send endpoints behind one local HTTP server.

Handlers validate and shape responses; every accepted message goes through `accept`, the one
place to hang later behaviour: it hands them to `ProviderEvents`, which posts the providers'
signed events and callbacks to the webhook receiver when `events_url` is configured.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from nurture.emulator import sendgrid_api, twilio_api
from nurture.emulator.events import ProviderEvents
from nurture.emulator.store import OutboxStore


def create_app(
    store: OutboxStore, *, sendgrid_api_key: str, twilio_account_sid: str, twilio_auth_token: str,
    events_url: str | None = None, sendgrid_event_key: str | None = None,
) -> FastAPI:
    """The emulator; with `events_url` (the receiver's base URL) it posts provider events there,
    SendGrid's signed with `sendgrid_event_key` (PEM, see `new_event_signing_key`)."""
    app = FastAPI(title="Nurture provider emulator", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.store = store
    app.state.sendgrid_api_key = sendgrid_api_key
    app.state.twilio_account_sid = twilio_account_sid
    app.state.twilio_auth_token = twilio_auth_token
    events = ProviderEvents(events_url=events_url, sendgrid_event_key=sendgrid_event_key,
                            twilio_account_sid=twilio_account_sid,
                            twilio_auth_token=twilio_auth_token)
    app.state.events = events

    async def accept(records: list[dict[str, Any]]) -> None:
        """Record messages a provider accepted (SQLite off the event loop), then queue the
        events the providers would report about them (posted later, in the background)."""
        await run_in_threadpool(store.add_many, records)
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

    app.include_router(sendgrid_api.router)
    app.include_router(twilio_api.router)
    app.add_exception_handler(HTTPException, _provider_http_error)
    return app


async def _provider_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Unknown paths and methods answer in the shape of the provider that owns the path."""
    path = request.url.path
    if path.startswith(f"/{twilio_api.API_VERSION}/"):
        code, message = ((20004, "Method not allowed") if exc.status_code == 405
                         else (20404, f"The requested resource {path} was not found"))
        return twilio_api.twilio_error(exc.status_code, code, message)
    message = "resource not found" if exc.status_code == 404 else str(exc.detail)
    return sendgrid_api.generic_error(exc.status_code, message)
