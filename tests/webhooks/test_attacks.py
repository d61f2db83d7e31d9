"""Every endpoint of the receiver under attack: forged, tampered, replayed, unsigned,
oversized (declared, and chunked with no length), malformed and wrong-content-type requests
are refused with their status, and every raw table — each row of it, not a count by id — is
exactly as it was. Then the genuine requests still land, and replaying them stores nothing.

What stops a replay: SendGrid signs a timestamp, and one outside ±10 minutes is refused;
inside the window, and for Twilio (whose signature covers no time), storage is keyed on the
provider's identity (`sg_event_id`; `MessageSid` + `MessageStatus`; an inbound `MessageSid`)
so a replayed request adds nothing. An unsubscribe is keyed on its token's digest. A survey
answer replayed by whoever holds the link restates that person's answer (counted, not
duplicated: one row per survey).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from nurture.tokens import TokenSigner, generate_key
from nurture.warehouse import connect
from nurture.webhooks import create_app
from nurture.webhooks.storage import PROVIDER_EVENT_TABLES
from nurture.webhooks.surveys import MAX_FORM_BYTES
from nurture.webhooks.unsubscribe import MAX_FORM_BYTES as MAX_UNSUBSCRIBE_BYTES

from .conftest import MAX_BODY, PUBLIC_URL, TWILIO_TOKEN, public_key_b64, sendgrid_sign

TABLES = (*PROVIDER_EVENT_TABLES, "raw.survey_responses")
SIGNER = TokenSigner([generate_key()])
OTHER_SIGNER = TokenSigner([generate_key()])
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
FORM = "application/x-www-form-urlencoded"
RUN = uuid.uuid4().hex[:10]  # ids of this module's rows


def snapshot(warehouse_url: str) -> dict[str, tuple[int, str]]:
    """Per raw table: its row count and a digest of every row."""
    found = {}
    with connect(warehouse_url) as conn, conn.cursor() as cur:
        for table in TABLES:
            cur.execute(f"select count(*), md5(coalesce(string_agg(t::text, '|' order by"
                        f" t::text), '')) from {table} t")
            found[table] = cur.fetchone()
    return found


@pytest.fixture(scope="module")
def app(raw_tables: str):
    return create_app(warehouse_url=raw_tables, public_url=PUBLIC_URL,
                      sendgrid_public_key=public_key_b64(SENDGRID_KEY),
                      twilio_auth_token=TWILIO_TOKEN, max_body_bytes=MAX_BODY,
                      token_signer=SIGNER)


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app)


def sendgrid_events(n: int = 1, tag: str = "ev") -> bytes:
    return json.dumps([{"sg_event_id": f"{RUN}-{tag}{i}", "event": "open",
                        "email": "someone@example.com", "timestamp": 1_700_000_000}
                       for i in range(n)]).encode()


def sendgrid_headers(body: bytes, *, timestamp: int | None = None,
                     key: ec.EllipticCurvePrivateKey = SENDGRID_KEY,
                     content_type: str = "application/json") -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"Content-Type": content_type, "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "X-Twilio-Email-Event-Webhook-Signature": sendgrid_sign(key, body, stamp)}


def twilio_form(path: str, params: dict[str, str], *, token: str = TWILIO_TOKEN,
                signed_url: str | None = None, content_type: str = FORM
                ) -> tuple[bytes, dict[str, str]]:
    signature = RequestValidator(token).compute_signature(signed_url or PUBLIC_URL + path,
                                                          params)
    return (urlencode(params).encode(),
            {"Content-Type": content_type, "X-Twilio-Signature": signature})


def status_params(tag: str = "st") -> dict[str, str]:
    return {"MessageSid": f"SM{RUN}{tag}", "MessageStatus": "delivered",
            "AccountSid": "AC" + "0" * 32, "To": "+358401234567"}


def inbound_params(tag: str = "in") -> dict[str, str]:
    return {"MessageSid": f"SM{RUN}{tag}", "Body": "STOP", "From": "+358401234567",
            "AccountSid": "AC" + "0" * 32}


def unsubscribe_path(signer: TokenSigner = SIGNER, purpose: str = "unsubscribe") -> str:
    return f"/unsubscribe/{signer.issue(purpose, f'C-{RUN}', 'email')}"


def survey_path(signer: TokenSigner = SIGNER, purpose: str = "survey") -> str:
    token = signer.issue(purpose, f"C-{RUN}", "email", survey_id=f"S-{RUN}", trigger="t")
    return f"/survey/{token}"


def tampered(path: str) -> str:
    """The token with one character in its middle changed."""
    middle = len(path) - 20
    return path[:middle] + ("A" if path[middle] != "A" else "B") + path[middle + 1:]


Attack = Callable[[TestClient], Any]
TOO_BIG = b"x" * (MAX_BODY + 1)
SG, STATUS, INBOUND = "/webhooks/sendgrid", "/webhooks/twilio/status", "/webhooks/twilio/inbound"


def _sendgrid(body: bytes, **signing) -> Attack:
    return lambda c: c.post(SG, content=body, headers=sendgrid_headers(body, **signing))


def _sendgrid_tampered(c: TestClient):
    headers = sendgrid_headers(sendgrid_events(1))
    return c.post(SG, content=sendgrid_events(1).replace(b"open", b"bounce"), headers=headers)


def _twilio(path: str, params: dict[str, str], **signing) -> Attack:
    def attack(c: TestClient):
        body, headers = twilio_form(path, params, **signing)
        return c.post(path, content=body, headers=headers)
    return attack


def _twilio_tampered(path: str, params: dict[str, str]) -> Attack:
    def attack(c: TestClient):
        _, headers = twilio_form(path, params)
        return c.post(path, content=urlencode({**params, "Body": "START",
                                               "MessageStatus": "failed"}).encode(),
                      headers=headers)
    return attack


def _twilio_signed_raw(path: str, body: bytes) -> Attack:
    """A signed request whose body is not a UTF-8 form (signed over no parameters)."""
    return lambda c: c.post(path, content=body, headers=twilio_form(path, {})[1])


def _post(path: Callable[[], str] | str, body: bytes = b"List-Unsubscribe=One-Click",
          content_type: str | None = FORM) -> Attack:
    headers = {"Content-Type": content_type} if content_type else {}
    return lambda c: c.post(path() if callable(path) else path, content=body, headers=headers)


ATTACKS: dict[str, tuple[Attack, int]] = {
    # SendGrid: signed event webhook (ECDSA over timestamp + body)
    "sendgrid unsigned": (lambda c: c.post(SG, content=sendgrid_events(),
                                           headers={"Content-Type": "application/json"}), 403),
    "sendgrid forged (another key)": (
        _sendgrid(sendgrid_events(), key=ec.generate_private_key(ec.SECP256R1())), 403),
    "sendgrid tampered body": (_sendgrid_tampered, 403),
    "sendgrid replayed an hour later": (
        _sendgrid(sendgrid_events(), timestamp=int(time.time()) - 3600), 403),
    "sendgrid from the future": (
        _sendgrid(sendgrid_events(), timestamp=int(time.time()) + 3600), 403),
    "sendgrid oversized": (_sendgrid(TOO_BIG), 413),
    "sendgrid not json": (_sendgrid(b"{not json"), 400),
    "sendgrid not an array": (_sendgrid(b'{"sg_event_id": "x"}'), 400),
    "sendgrid event without id": (_sendgrid(b'[{"event": "open"}]'), 400),
    "sendgrid wrong content type": (
        _sendgrid(sendgrid_events(), content_type="text/plain"), 400),
    # Twilio: HMAC-SHA1 over the public URL and the form
    "twilio status unsigned": (_post(STATUS, urlencode(status_params()).encode()), 403),
    "twilio status forged (another token)": (
        _twilio(STATUS, status_params(), token="not-the-token"), 403),
    "twilio status signed for another url": (
        _twilio(STATUS, status_params(), signed_url=f"http://testserver{STATUS}"), 403),
    "twilio status tampered": (_twilio_tampered(STATUS, status_params()), 403),
    "twilio status oversized": (_twilio(STATUS, {**status_params(), "x": "y" * MAX_BODY}),
                                413),
    "twilio status not utf-8": (_twilio_signed_raw(STATUS, b"MessageSid=\xff\xfe"), 400),
    "twilio status without status": (
        _twilio(STATUS, {"MessageSid": f"SM{RUN}x", "AccountSid": "AC1"}), 400),
    "twilio status wrong content type": (
        _twilio(STATUS, status_params(), content_type="application/json"), 400),
    "twilio inbound unsigned": (_post(INBOUND, urlencode(inbound_params()).encode()), 403),
    "twilio inbound forged": (_twilio(INBOUND, inbound_params(), token="nope"), 403),
    "twilio inbound tampered (STOP became START)": (
        _twilio_tampered(INBOUND, inbound_params()), 403),
    "twilio inbound oversized": (_twilio(INBOUND, {**inbound_params(), "Body": "y" * MAX_BODY}),
                                 413),
    "twilio inbound wrong content type": (
        _twilio(INBOUND, inbound_params(), content_type="text/xml"), 400),
    # Unsubscribe: the token is the credential
    "unsubscribe forged token": (_post(lambda: unsubscribe_path(OTHER_SIGNER)), 404),
    "unsubscribe tampered token": (_post(lambda: tampered(unsubscribe_path())), 404),
    "unsubscribe with a survey token": (_post(lambda: unsubscribe_path(purpose="survey")), 404),
    "unsubscribe garbage token": (_post("/unsubscribe/" + "A" * 2000), 404),
    "unsubscribe oversized": (_post(unsubscribe_path, b"x" * (MAX_UNSUBSCRIBE_BYTES + 1)), 413),
    "unsubscribe wrong content type": (
        _post(unsubscribe_path, b'{"unsubscribe": true}', "application/json"), 400),
    # Survey: the token is the credential
    "survey forged token": (_post(lambda: survey_path(OTHER_SIGNER), b"score=9"), 404),
    "survey tampered token": (_post(lambda: tampered(survey_path()), b"score=9"), 404),
    "survey with an unsubscribe token": (
        _post(lambda: survey_path(purpose="unsubscribe"), b"score=9"), 404),
    "survey oversized": (_post(survey_path, b"score=9&comment=" + b"x" * MAX_FORM_BYTES), 413),
    "survey wrong content type": (_post(survey_path, b'{"score": 9}', "application/json"), 400),
    "survey malformed score": (_post(survey_path, b"score=11"), 400),
    "survey not utf-8": (_post(survey_path, b"score=9&comment=\xff"), 400),
}


@pytest.mark.parametrize("name", ATTACKS)
def test_an_attack_is_refused_and_stores_nothing(client, raw_tables, name):
    attack, status = ATTACKS[name]
    before = snapshot(raw_tables)
    response = attack(client)
    assert response.status_code == status, response.text
    assert snapshot(raw_tables) == before


CHUNKED = {  # path -> content type: a body with no Content-Length, cut off past the limit
    SG: "application/json",
    STATUS: FORM,
    INBOUND: FORM,
    "unsubscribe": FORM,
    "survey": FORM,
}


@pytest.mark.parametrize("target", CHUNKED)
def test_a_chunked_body_is_cut_off_before_it_is_all_read(app, raw_tables, target):
    """Raw ASGI: the test client would read the whole body before the app runs."""
    path = {"unsubscribe": unsubscribe_path(), "survey": survey_path()}.get(target, target)
    chunks_sent: list[int] = []
    answer: list[dict] = []
    total_chunks = 1000  # 1 MB on offer

    async def receive() -> dict:
        chunks_sent.append(1)
        return {"type": "http.request", "body": b"x" * 1024,
                "more_body": len(chunks_sent) < total_chunks}

    async def send(message: dict) -> None:
        answer.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "https", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 1),
             "server": ("testserver", 443),
             "headers": [(b"content-type", CHUNKED[target].encode()),
                         (b"transfer-encoding", b"chunked"),
                         (b"x-twilio-signature", b"irrelevant"),
                         (b"x-twilio-email-event-webhook-signature", b"irrelevant"),
                         (b"x-twilio-email-event-webhook-timestamp", b"1")]}
    before = snapshot(raw_tables)
    asyncio.run(app(scope, receive, send))
    assert answer[0]["status"] == 413
    assert len(chunks_sent) <= MAX_FORM_BYTES // 1024 + 2 < total_chunks
    assert snapshot(raw_tables) == before


def test_unconfigured_keys_refuse_rather_than_accept_unsigned(raw_tables):
    bare = TestClient(create_app(warehouse_url=raw_tables, public_url=PUBLIC_URL,
                                 sendgrid_public_key=None, twilio_auth_token=None))
    before = snapshot(raw_tables)
    body = sendgrid_events()
    assert bare.post(SG, content=body, headers=sendgrid_headers(body)).status_code == 503
    form, headers = twilio_form(STATUS, status_params())
    assert bare.post(STATUS, content=form, headers=headers).status_code == 503
    assert _post(unsubscribe_path)(bare).status_code == 503
    assert _post(survey_path, b"score=9")(bare).status_code == 503
    assert snapshot(raw_tables) == before


def test_genuine_requests_land_once_and_replays_add_nothing(client, raw_tables):
    events = sendgrid_events(2, tag="ok")
    sg_headers = sendgrid_headers(events)
    status_body, status_headers = twilio_form(STATUS, status_params("ok"))
    inbound_body, inbound_headers = twilio_form(INBOUND, inbound_params("ok"))
    unsubscribe, survey = unsubscribe_path(), survey_path()
    genuine = [
        lambda: client.post(SG, content=events, headers=sg_headers),
        lambda: client.post(STATUS, content=status_body, headers=status_headers),
        lambda: client.post(INBOUND, content=inbound_body, headers=inbound_headers),
        lambda: client.post(unsubscribe, content=b"List-Unsubscribe=One-Click",
                            headers={"Content-Type": FORM}),
        lambda: client.post(unsubscribe, content=b"",  # a client sending no Content-Type
                            headers={}),
        lambda: client.post(survey, content=b"score=9", headers={"Content-Type": FORM}),
    ]
    before = snapshot(raw_tables)
    assert [send().status_code for send in genuine] == [200] * len(genuine)
    after = snapshot(raw_tables)
    added = {table: after[table][0] - before[table][0] for table in TABLES}
    assert added == {"raw.sendgrid_events": 2, "raw.twilio_status_callbacks": 1,
                     "raw.twilio_inbound_messages": 1, "raw.unsubscribe_requests": 1,
                     "raw.survey_responses": 1}

    for send in genuine[:5]:  # the very same requests again, signatures and all
        assert send().status_code == 200
    assert {table: snapshot(raw_tables)[table] for table in PROVIDER_EVENT_TABLES} == \
        {table: after[table] for table in PROVIDER_EVENT_TABLES}
    genuine[5]()
    assert snapshot(raw_tables)["raw.survey_responses"][0] == after["raw.survey_responses"][0]
