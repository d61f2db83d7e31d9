"""The webhook receiver: SendGrid events and Twilio callbacks, verified, then stored raw.

Every request goes through the same gates, in this order, and nothing is written unless it
passes them all:

    503  the verification key / auth token is not configured (unsigned data is never taken)
    400  wrong Content-Type (SendGrid: application/json; Twilio: form-urlencoded)
    413  body over `max_body_bytes` (Content-Length checked first, the read itself capped)
    403  signature header missing, signature wrong, or SendGrid timestamp outside
         ±`tolerance_s` (one code for every authentication failure, so a caller learns
         nothing about which check failed)
    400  malformed body (SendGrid: not a JSON array of objects with `sg_event_id`;
         Twilio: not UTF-8, or MessageSid / MessageStatus missing)

Accepted payloads are stored raw before anything interprets them, idempotently, and
answered at once. Replays inside the SendGrid tolerance window and Twilio replays (Twilio
signs no timestamp) are harmless: they store nothing new.

`public_url` is the external base URL of this app as the providers call it (including any
prefix a proxy or the Airflow API server mounts it under). Twilio signs the URL it called,
and behind a proxy the request's own host and scheme are not that URL, so they are ignored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from nurture.tokens import TokenSigner
from nurture.webhooks import storage
from nurture.webhooks.short_links import short_link_router
from nurture.webhooks.signatures import load_sendgrid_key, verify_sendgrid, verify_twilio
from nurture.webhooks.surveys import survey_router
from nurture.webhooks.unsubscribe import unsubscribe_router

log = logging.getLogger(__name__)

SENDGRID_PATH = "/webhooks/sendgrid"
TWILIO_STATUS_PATH = "/webhooks/twilio/status"
CALLBACK_IDS = ("ledger_id", "program", "step")  # query of the dispatcher's StatusCallback
TWILIO_INBOUND_PATH = "/webhooks/twilio/inbound"
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TWILIO_SIGNATURE = "X-Twilio-Signature"
# Twilio reads the answer to an inbound message as TwiML: an empty Response means "no reply"
# (a JSON body would be logged as error 12300 in the Twilio console and may trigger the
# fallback URL). The count goes in a header instead.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
STORED_HEADER = "X-Nurture-Stored"


def create_app(
    *,
    warehouse_url: str,
    public_url: str,
    sendgrid_public_key: str | None,
    twilio_auth_token: str | None,
    max_body_bytes: int = 1_000_000,
    tolerance_s: int = 600,
    token_signer: TokenSigner | None = None,
) -> FastAPI:
    """The receiver as an ASGI app; a malformed SendGrid key fails here, not per request."""
    if sendgrid_public_key:
        load_sendgrid_key(sendgrid_public_key)  # raises ValueError with a clear message
    base_url = public_url.rstrip("/")
    tables = _Tables(warehouse_url)
    app = FastAPI(title="Nurture webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(unsubscribe_router(token_signer, tables.store))
    app.include_router(survey_router(token_signer, tables.store))
    app.include_router(short_link_router(warehouse_url))

    @app.post(SENDGRID_PATH)
    async def sendgrid_events(request: Request) -> Response:
        if not sendgrid_public_key:
            _refuse(
                503,
                "SendGrid webhook verification key is not configured "
                "(webhook_verification_key extra of sendgrid_default)",
            )
        _require_content_type(request, "application/json")
        body = await _read_capped(request, max_body_bytes)
        signature = request.headers.get(SENDGRID_SIGNATURE)
        timestamp = request.headers.get(SENDGRID_TIMESTAMP)
        if not signature or not timestamp:
            _refuse(403, "missing SendGrid signature headers")
        if not _fresh(timestamp, tolerance_s):
            _refuse(403, "SendGrid timestamp outside the accepted window")
        if not verify_sendgrid(sendgrid_public_key, body, signature, timestamp):
            _refuse(403, "invalid SendGrid signature")
        events = _sendgrid_events(body)
        stored = await run_in_threadpool(tables.store, storage.store_sendgrid_events, events)
        return JSONResponse({"stored": stored})

    @app.post(TWILIO_STATUS_PATH)
    async def twilio_status(request: Request) -> Response:
        form = await _twilio_form(request, TWILIO_STATUS_PATH, ("MessageSid", "MessageStatus"))
        # Our ids ride in the callback URL, which the signature covers: kept with the status,
        # so reconcile can tie it to a ledger row whose send answer was lost.
        form.update({name: value for name, value in request.query_params.items()
                     if name in CALLBACK_IDS and name not in form})
        stored = await run_in_threadpool(tables.store, storage.store_twilio_status, form)
        return JSONResponse({"stored": stored})

    @app.post(TWILIO_INBOUND_PATH)
    async def twilio_inbound(request: Request) -> Response:
        form = await _twilio_form(request, TWILIO_INBOUND_PATH, ("MessageSid",))
        stored = await run_in_threadpool(tables.store, storage.store_twilio_inbound, form)
        return Response(EMPTY_TWIML, media_type="text/xml", headers={STORED_HEADER: str(stored)})

    async def _twilio_form(
        request: Request, path: str, required: tuple[str, ...]
    ) -> dict[str, str | list[str]]:
        if not twilio_auth_token:
            _refuse(503, "Twilio auth token is not configured (password of twilio_default)")
        _require_content_type(request, "application/x-www-form-urlencoded")
        body = await _read_capped(request, max_body_bytes)
        signature = request.headers.get(TWILIO_SIGNATURE)
        if not signature:
            _refuse(403, "missing X-Twilio-Signature")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            _refuse(400, "form body is not UTF-8 url-encoded")
        params: dict[str, list[str]] = {}
        for name, value in pairs:
            params.setdefault(name, []).append(value)
        if not verify_twilio(
            twilio_auth_token, _called_url(base_url, path, request), params, signature
        ):
            _refuse(403, "invalid Twilio signature")
        # The keys must be single, non-empty values: they become the table's primary key.
        missing = [
            name for name in required if len(params.get(name, [])) != 1 or not params[name][0]
        ]
        if missing:
            _refuse(400, f"missing or repeated {', '.join(missing)}")
        # Stored as sent: one value per name, a list only where Twilio repeated a name.
        return {name: values[0] if len(values) == 1 else values for name, values in params.items()}

    return app


class _Tables:
    """Creates the raw tables on the first write, once per process.

    Lazily rather than at start-up because a mounted sub-application (inside the Airflow
    API server) never sees lifespan events.
    """

    def __init__(self, warehouse_url: str) -> None:
        self.warehouse_url = warehouse_url
        self._ready = False
        self._lock = threading.Lock()

    def store(self, insert: Callable[[str, Any], int], payload: Any) -> int:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    storage.create_tables(self.warehouse_url)
                    self._ready = True
        return insert(self.warehouse_url, payload)


def _refuse(status: int, detail: str) -> NoReturn:
    log.warning("webhook refused (%s): %s", status, detail)
    raise HTTPException(status_code=status, detail=detail)


def _require_content_type(request: Request, expected: str) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != expected:
        _refuse(400, f"Content-Type must be {expected}")


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, refusing with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            _refuse(400, "invalid Content-Length")
        if int(declared) > limit:
            _refuse(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            _refuse(413, f"body larger than {limit} bytes")
    return bytes(body)


def _fresh(timestamp: str, tolerance_s: int) -> bool:
    return timestamp.isdigit() and abs(time.time() - int(timestamp)) <= tolerance_s


def _sendgrid_events(body: bytes) -> list[dict[str, Any]]:
    try:
        events = json.loads(body)
    except ValueError:
        _refuse(400, "body is not JSON")
    if not isinstance(events, list):
        _refuse(400, "body must be a JSON array of events")
    for event in events:
        if not isinstance(event, dict):
            _refuse(400, "every event must be a JSON object")
        event_id = event.get("sg_event_id")
        if not isinstance(event_id, str) or not event_id:
            _refuse(400, "every event needs an sg_event_id")
    return events


def _called_url(base_url: str, path: str, request: Request) -> str:
    """The URL Twilio called: public base + route + the query string exactly as received."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{base_url}{path}?{query}" if query else f"{base_url}{path}"
