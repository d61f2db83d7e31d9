"""The receiver as deployed: its keys from the provider connections (metadata database,
environment or secrets backend), so the operator sets them in one place."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from nurture import settings
from nurture.exceptions import ConfigurationError
from nurture.tokens import TokenSigner

log = logging.getLogger(__name__)


def from_connections(*, warehouse_url: str, public_url: str) -> FastAPI:
    """A provider whose connection or key is missing is refused (503), not accepted unsigned."""
    from airflow.models.connection import Connection

    from nurture.webhooks.app import create_app

    def connection(conn_id: str):
        try:
            return Connection.get_connection_from_secrets(conn_id)
        except Exception:  # AirflowNotFoundException
            return None

    sendgrid, twilio = connection("sendgrid_default"), connection("twilio_default")
    try:
        signer = TokenSigner.from_connection(
            get_connection=Connection.get_connection_from_secrets)
    except ConfigurationError:
        signer = None  # the unsubscribe pages answer 503 until nurture_signing is set
    return create_app(
        warehouse_url=warehouse_url,
        public_url=public_url,
        sendgrid_public_key=(sendgrid.extra_dejson.get("webhook_verification_key")
                             if sendgrid else None),
        twilio_auth_token=twilio.password if twilio else None,
        token_signer=signer,
    )


class DeferredReceiver:
    """The receiver as the Airflow API server mounts it: built from the connections on its
    first request, so the API server starts before they (or the warehouse) are set; until
    they are, it answers 503 and tries again on the next request."""

    def __init__(self, url_prefix: str) -> None:
        self.url_prefix = url_prefix
        self._app: FastAPI | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":  # mounted apps get none; standalone use may
            return
        app = self._app or await self._build()
        if app is None:
            await JSONResponse({"detail": "the webhook receiver is not configured: set "
                                "NURTURE_WAREHOUSE_URL for the API server"},
                               status_code=503)(scope, receive, send)
            return
        await app(scope, receive, send)

    async def _build(self) -> FastAPI | None:
        async with self._lock:
            if self._app is None:
                self._app = await run_in_threadpool(self._from_environment)
        return self._app

    def _from_environment(self) -> FastAPI | None:
        from airflow.configuration import conf

        warehouse_url = settings.warehouse_url()
        if not warehouse_url:
            log.error("webhook receiver: NURTURE_WAREHOUSE_URL is not set")
            return None
        base_url = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
        public_url = settings.public_url() or base_url + self.url_prefix
        return from_connections(warehouse_url=warehouse_url, public_url=public_url)
