"""POST /webhooks/sendgrid through HTTP against the embedded warehouse: signed batches are
stored raw, once; anything refused leaves the table untouched.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from nurture.warehouse import connect
from nurture.webhooks import create_app

from .conftest import MAX_BODY, PUBLIC_URL, TWILIO_TOKEN, as_body, count, events

TABLE = "raw.sendgrid_events"


def test_signed_batch_is_stored_raw(sendgrid, raw_tables, prefix) -> None:
    batch = events(prefix, "delivered", "open", "click")
    batch[2]["url"] = "https://example.com/?a=1&b=ü"
    response = sendgrid.post(as_body(batch))
    assert response.status_code == 200
    assert response.json() == {"stored": 3}
    with connect(raw_tables) as conn, conn.cursor() as cur:
        cur.execute(
            f"select sg_event_id, event, payload, received_at from {TABLE}"
            " where sg_event_id like %s order by sg_event_id",
            (prefix + "%",),
        )
        rows = cur.fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(e["sg_event_id"], e["event"], e) for e in batch]
    assert all(r[3] is not None for r in rows)


def test_redelivered_batch_stores_nothing_twice(sendgrid, raw_tables, prefix) -> None:
    batch = events(prefix, "delivered", "open")
    assert sendgrid.post(as_body(batch)).json() == {"stored": 2}
    assert sendgrid.post(as_body(batch)).json() == {"stored": 0}
    more = events(prefix, "delivered", "open", "bounce")  # first two are the same ids
    assert sendgrid.post(as_body(more)).json() == {"stored": 1}
    assert count(raw_tables, TABLE, prefix) == 3


def test_duplicates_inside_one_batch_are_stored_once(sendgrid, raw_tables, prefix) -> None:
    batch = events(prefix, "open")
    assert sendgrid.post(as_body(batch + batch)).json() == {"stored": 1}
    assert count(raw_tables, TABLE, prefix) == 1


def test_empty_batch_is_accepted(sendgrid) -> None:
    assert sendgrid.post(b"[]").json() == {"stored": 0}


def test_unsigned_batch_is_refused(client, raw_tables, prefix) -> None:
    response = client.post(
        "/webhooks/sendgrid",
        content=as_body(events(prefix, "open")),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 403
    assert count(raw_tables, TABLE, prefix) == 0


def test_forged_batches_are_refused(sendgrid, raw_tables, prefix) -> None:
    body = as_body(events(prefix, "open"))
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert sendgrid.post(body, key=stranger).status_code == 403
    good = sendgrid.post(b"[]").request.headers  # a real signature, for another body
    replayed = {
        "X-Twilio-Email-Event-Webhook-Signature": good["X-Twilio-Email-Event-Webhook-Signature"],
        "X-Twilio-Email-Event-Webhook-Timestamp": good["X-Twilio-Email-Event-Webhook-Timestamp"],
    }
    assert sendgrid.post(body, headers=replayed).status_code == 403
    assert (
        sendgrid.post(body, headers={"X-Twilio-Email-Event-Webhook-Signature": ""}).status_code
        == 403
    )
    assert count(raw_tables, TABLE, prefix) == 0


@pytest.mark.parametrize("offset", [-3600, -601, 601, 3600])
def test_timestamp_outside_the_window_is_refused(sendgrid, raw_tables, prefix, offset) -> None:
    stale = str(int(time.time()) + offset)
    response = sendgrid.post(as_body(events(prefix, "open")), timestamp=stale)
    assert response.status_code == 403
    assert count(raw_tables, TABLE, prefix) == 0


def test_timestamp_that_is_not_a_number_is_refused(sendgrid, raw_tables, prefix) -> None:
    response = sendgrid.post(as_body(events(prefix, "open")), timestamp="yesterday")
    assert response.status_code == 403
    assert count(raw_tables, TABLE, prefix) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"sg_event_id": "x", "event": "open"}',
        b'["open"]',
        b'[{"event": "open"}]',
        b'[{"event": "open", "sg_event_id": ""}]',
        b'[{"event": "open", "sg_event_id": 42}]',
    ],
    ids=["not-json", "object", "string-event", "no-id", "empty-id", "numeric-id"],
)
def test_malformed_signed_body_is_refused(sendgrid, raw_tables, prefix, body) -> None:
    valid = events(prefix, "open")[0]  # put in front of any array: a bad batch stores nothing
    response = sendgrid.post(body.replace(b"[", b"[" + json.dumps(valid).encode() + b",", 1))
    assert response.status_code == 400
    assert count(raw_tables, TABLE, prefix) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_is_refused(sendgrid, raw_tables, prefix, content_type) -> None:
    response = sendgrid.post(as_body(events(prefix, "open")), content_type=content_type)
    assert response.status_code == 400
    assert count(raw_tables, TABLE, prefix) == 0


def test_oversized_body_is_refused(sendgrid, raw_tables, prefix) -> None:
    batch = events(prefix, *["open"] * 100)
    assert len(as_body(batch)) > MAX_BODY
    assert sendgrid.post(as_body(batch)).status_code == 413
    assert count(raw_tables, TABLE, prefix) == 0


def test_oversized_body_without_content_length_is_cut_off(client, raw_tables, prefix) -> None:
    """A chunked upload has no Content-Length: the read itself stops past the limit.

    Driven through raw ASGI because the test client reads the whole body before the app runs.
    """
    received: list[int] = []
    answer: list[dict] = []

    async def receive() -> dict:
        received.append(1)
        return {"type": "http.request", "body": b" " * 1024, "more_body": len(received) < 100}

    async def send(message: dict) -> None:
        answer.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/sendgrid",
        "raw_path": b"/webhooks/sendgrid",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(client.app(scope, receive, send))
    assert answer[0]["status"] == 413
    assert len(received) <= MAX_BODY // 1024 + 1
    assert count(raw_tables, TABLE, prefix) == 0


def test_unconfigured_key_refuses_rather_than_accepting_unsigned(raw_tables, prefix) -> None:
    app = create_app(
        warehouse_url=raw_tables,
        public_url=PUBLIC_URL,
        sendgrid_public_key=None,
        twilio_auth_token=TWILIO_TOKEN,
    )
    response = TestClient(app).post(
        "/webhooks/sendgrid",
        content=as_body(events(prefix, "open")),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 503
    assert "webhook_verification_key" in response.json()["detail"]
    assert count(raw_tables, TABLE, prefix) == 0


def test_malformed_key_fails_at_start_up(raw_tables) -> None:
    with pytest.raises(ValueError, match="SendGrid"):
        create_app(
            warehouse_url=raw_tables,
            public_url=PUBLIC_URL,
            sendgrid_public_key="not-a-key",
            twilio_auth_token=None,
        )
