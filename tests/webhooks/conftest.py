"""Keys generated per session, a receiver app against the embedded warehouse, and signers
that play the providers' part: what they produce is what SendGrid and Twilio would send.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from nurture.warehouse import connect
from nurture.webhooks import create_app
from nurture.webhooks.storage import create_tables

PUBLIC_URL = "https://hooks.nurture.example/base"
TWILIO_TOKEN = "test-auth-token-0123456789abcdef"
MAX_BODY = 4096


def public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid displays it: base64 of the DER public key."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sendgrid_sign(private_key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    """What SendGrid puts in X-Twilio-Email-Event-Webhook-Signature."""
    der = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


@dataclass
class SendGrid:
    """Posts event batches as SendGrid does, signed with the session's key."""

    client: TestClient
    private_key: ec.EllipticCurvePrivateKey

    def post(
        self,
        body: bytes,
        *,
        timestamp: str | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        timestamp = timestamp or str(int(time.time()))
        signature = sendgrid_sign(key or self.private_key, body, timestamp)
        sent = {
            "Content-Type": content_type,
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }
        sent.update(headers or {})
        return self.client.post("/webhooks/sendgrid", content=body, headers=sent)


@dataclass
class Twilio:
    """Posts form callbacks as Twilio does, signed over the public URL it called."""

    client: TestClient
    token: str = TWILIO_TOKEN

    def post(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        query: str = "",
        signed_url: str | None = None,
        token: str | None = None,
        content_type: str = "application/x-www-form-urlencoded",
    ) -> Any:
        target = f"{path}?{query}" if query else path
        url = signed_url or PUBLIC_URL + target
        signature = RequestValidator(token or self.token).compute_signature(url, dict(params))
        return self.client.post(
            target,
            content=urlencode(params).encode(),
            headers={"Content-Type": content_type, "X-Twilio-Signature": signature},
        )


@pytest.fixture(scope="session")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def raw_tables(warehouse_url: str) -> str:
    create_tables(warehouse_url)
    return warehouse_url


@pytest.fixture(scope="session")
def client(raw_tables: str, sendgrid_key: ec.EllipticCurvePrivateKey) -> TestClient:
    app = create_app(
        warehouse_url=raw_tables,
        public_url=PUBLIC_URL + "/",
        sendgrid_public_key=public_key_b64(sendgrid_key),
        twilio_auth_token=TWILIO_TOKEN,
        max_body_bytes=MAX_BODY,
    )
    return TestClient(app)


@pytest.fixture
def sendgrid(client: TestClient, sendgrid_key: ec.EllipticCurvePrivateKey) -> SendGrid:
    return SendGrid(client, sendgrid_key)


@pytest.fixture
def twilio(client: TestClient) -> Twilio:
    return Twilio(client)


@pytest.fixture
def prefix() -> str:
    """Ids unique to one test, so tests never see each other's rows."""
    return f"t{uuid.uuid4().hex[:12]}"


def events(prefix: str, *names: str) -> list[dict[str, Any]]:
    return [
        {
            "email": f"{prefix}-{i}@example.com",
            "timestamp": 1_700_000_000 + i,
            "event": name,
            "sg_event_id": f"{prefix}-ev{i}",
            "sg_message_id": f"{prefix}-msg.filter0001",
        }
        for i, name in enumerate(names)
    ]


def as_body(batch: list[dict[str, Any]]) -> bytes:
    return json.dumps(batch).encode()


def count(warehouse_url: str, table: str, prefix: str) -> int:
    """Rows of `table` whose key starts with this test's prefix."""
    column = "sg_event_id" if table == "raw.sendgrid_events" else "message_sid"
    with connect(warehouse_url) as conn, conn.cursor() as cur:
        cur.execute(f"select count(*) from {table} where {column} like %s", (prefix + "%",))
        return cur.fetchone()[0]
