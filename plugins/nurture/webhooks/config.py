"""The receiver as deployed: its keys from the provider connections (metadata database,
environment or secrets backend), so the operator sets them in one place."""

from __future__ import annotations

from fastapi import FastAPI

from nurture.exceptions import ConfigurationError
from nurture.tokens import TokenSigner
from nurture.webhooks.app import create_app


def from_connections(*, warehouse_url: str, public_url: str) -> FastAPI:
    """A provider whose connection or key is missing is refused (503), not accepted unsigned."""
    from airflow.models.connection import Connection

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
