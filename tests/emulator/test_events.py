"""Signed provider events after a send, checked by a receiver using the webhook's own verifiers.

The receiver here is a stand-in for nurture.webhooks.app (no warehouse): it records every
request and verifies it with `nurture.webhooks.signatures` (and SendGrid's SDK helper, as a
second peer), exactly as the real receiver would.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import CustomArg, Mail, Personalization, To
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from nurture.emulator import new_event_signing_key, post_inbound, run_in_thread
from nurture.emulator.events import Poster, ProviderEvents, sign_sendgrid
from nurture.emulator.server import serve_app_in_thread
from nurture.webhooks.signatures import verify_sendgrid, verify_twilio

from .conftest import CREDENTIALS

ACCOUNT_SID, AUTH_TOKEN = CREDENTIALS["twilio_account_sid"], CREDENTIALS["twilio_auth_token"]
SENDER, FROM = "programs@nurture.example", "+15005550006"
WAIT_S = 5.0


class Receiver:
    """Records webhook requests; answers 503 to the next `fail_next` requests."""

    def __init__(self, public_key: str) -> None:
        self.public_key = public_key
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self.url = ""
        self.app = FastAPI()
        self.app.add_api_route("/webhooks/{path:path}", self._record, methods=["POST"])

    async def _record(self, path: str, request: Request) -> Response:
        body = await request.body()
        if self.fail_next:
            self.fail_next -= 1
            return Response(status_code=503)
        entry: dict[str, Any] = {"path": path, "body": body, "headers": dict(request.headers)}
        if path == "sendgrid":
            signature = request.headers.get("x-twilio-email-event-webhook-signature", "")
            timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp", "")
            entry["events"] = json.loads(body)
            entry["timestamp"] = timestamp
            entry["verified"] = verify_sendgrid(self.public_key, body, signature, timestamp)
            entry["sdk_verified"] = EventWebhook(self.public_key).verify_signature(
                body.decode(), signature, timestamp)
        else:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
            entry["form"] = form
            called = self.url + request.url.path + (
                f"?{request.url.query}" if request.url.query else "")
            entry["verified"] = verify_twilio(
                AUTH_TOKEN, called, form, request.headers.get("x-twilio-signature", ""))
        self.requests.append(entry)
        return Response(status_code=200)

    def of(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    def wait_for(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {self.requests!r}")
            time.sleep(0.02)


@pytest.fixture(scope="module")
def signing_key() -> tuple[str, str]:
    return new_event_signing_key()


@pytest.fixture(scope="module")
def receiver(signing_key) -> Iterator[Receiver]:
    receiver = Receiver(signing_key[1])
    with serve_app_in_thread(receiver.app, name="test-receiver") as url:
        receiver.url = url
        yield receiver


@pytest.fixture(scope="module")
def events_emulator(receiver, signing_key, tmp_path_factory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("events") / "outbox.sqlite3"
    with run_in_thread(path, **CREDENTIALS, events_url=receiver.url,
                       sendgrid_event_key=signing_key[0]) as url:
        yield url


@pytest.fixture
def fresh(receiver) -> Receiver:
    receiver.requests.clear()
    receiver.fail_next = 0
    return receiver


def twilio_client(base_url: str) -> Client:
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = base_url
    return client


def mail_to(*emails: str, **custom_args: str) -> Mail:
    mail = Mail(from_email=SENDER, subject="Welcome", plain_text_content="Hi",
                html_content='<p>Hi <a href="https://nurture.example/start">start</a> '
                             '<a href="https://nurture.example/unsubscribe?t=x">unsub</a></p>')
    for i, email in enumerate(emails):
        p = Personalization()
        p.add_to(To(email))
        p.add_custom_arg(CustomArg("ledger_id", f"L-{i}"))
        mail.add_personalization(p, index=i)
    mail.custom_arg = [CustomArg(k, v) for k, v in custom_args.items()]
    return mail


EXPECTED_EMAIL = {
    "ana@example.com": ["processed", "delivered", "open", "click"],
    "bounce.hard@example.com": ["processed", "bounce"],
    "dropped1@example.com": ["dropped"],
    "spam@example.com": ["processed", "delivered", "spamreport"],
    "unsubscribe-me@example.com": ["processed", "delivered", "unsubscribe"],
}


def test_sendgrid_events_per_test_address_signed_as_sendgrid_signs(fresh, events_emulator):
    sendgrid = SendGridAPIClient(api_key=CREDENTIALS["sendgrid_api_key"], host=events_emulator)
    response = sendgrid.send(mail_to(*EXPECTED_EMAIL, program="onboarding", step="welcome"))
    assert response.status_code == 202
    message_id = response.headers["X-Message-Id"]
    total = sum(map(len, EXPECTED_EMAIL.values()))
    fresh.wait_for(lambda: sum(len(r["events"]) for r in fresh.of("sendgrid")) >= total)

    [post] = fresh.of("sendgrid")  # one batch per API request
    assert post["verified"] and post["sdk_verified"]
    assert abs(int(post["timestamp"]) - time.time()) < 60
    assert post["headers"]["content-type"].startswith("application/json")
    events = post["events"]
    assert len({e["sg_event_id"] for e in events}) == len(events) == total
    for i, (email, expected) in enumerate(EXPECTED_EMAIL.items()):
        mine = [e for e in events if e["email"] == email]
        assert [e["event"] for e in mine] == expected
        assert len({e["sg_message_id"] for e in mine}) == 1
        assert mine[0]["sg_message_id"].startswith(f"{message_id}.filter")
        for event in mine:  # custom_args copied in as top-level keys
            assert (event["program"], event["step"], event["ledger_id"]) == (
                "onboarding", "welcome", f"L-{i}")
            assert isinstance(event["timestamp"], int)
    by_kind = {e["event"]: e for e in events}
    assert by_kind["bounce"]["type"] == "bounce"
    assert by_kind["click"]["url"] == "https://nurture.example/start"
    assert by_kind["dropped"]["reason"]


def test_tampered_sendgrid_body_is_refused_by_the_receiver_verifier(signing_key):
    private_pem, public_key = signing_key
    body, timestamp = b'[{"event":"open","sg_event_id":"x"}]\r\n', str(int(time.time()))
    signature = sign_sendgrid(private_pem, body, timestamp)
    assert verify_sendgrid(public_key, body, signature, timestamp)
    assert not verify_sendgrid(public_key, body.replace(b"open", b"click"), signature, timestamp)
    assert not verify_sendgrid(public_key, body, signature, str(int(timestamp) + 1))
    assert not verify_sendgrid(new_event_signing_key()[1], body, signature, timestamp)


def test_twilio_status_callbacks_in_order_and_signed(fresh, events_emulator):
    twilio = twilio_client(events_emulator)
    callback = f"{fresh.url}/webhooks/twilio/status?program=winback&step=sms1&ledger_id=7"
    numbers = {"+14155552671": [("sent", None), ("delivered", None)],
               "+14155550003": [("sent", None), ("undelivered", "30003")],
               "+14155550008": [("failed", "30008")]}
    sids = {to: twilio.messages.create(to=to, from_=FROM, body="Hi", status_callback=callback).sid
            for to in numbers}
    twilio.messages.create(to="+14155559999", from_=FROM, body="no callback")
    fresh.wait_for(lambda: len(fresh.of("twilio/status")) >= 5)
    time.sleep(0.2)  # nothing more arrives (the message without StatusCallback posts nothing)

    posts = fresh.of("twilio/status")
    assert len(posts) == 5 and all(p["verified"] for p in posts)
    assert all(p["headers"]["content-type"] == "application/x-www-form-urlencoded"
               for p in posts)
    for to, expected in numbers.items():
        forms = [p["form"] for p in posts if p["form"]["To"] == to]
        assert [(f["MessageStatus"], f.get("ErrorCode")) for f in forms] == expected
        for form in forms:
            assert form["MessageSid"] == form["SmsSid"] == sids[to]
            assert (form["AccountSid"], form["From"], form["ApiVersion"]) == (
                ACCOUNT_SID, FROM, "2010-04-01")


def test_stop_blocks_sends_with_21610_until_start(fresh, events_emulator):
    twilio, number = twilio_client(events_emulator), "+14155557777"
    twilio.messages.create(to=number, from_=FROM, body="Welcome")

    stop = post_inbound(events_emulator, "Stop ", number)
    assert stop["opt_out_type"] == "STOP" and stop["to"] == FROM
    with pytest.raises(TwilioRestException) as caught:
        twilio.messages.create(to=number, from_=FROM, body="Still there?")
    assert (caught.value.status, caught.value.code) == (400, 21610)
    assert caught.value.msg.endswith("Attempt to send to unsubscribed recipient")
    twilio.messages.create(to="+14155557778", from_=FROM, body="others are unaffected")

    assert post_inbound(events_emulator, "HELP", number)["opt_out_type"] == "HELP"
    with pytest.raises(TwilioRestException):  # HELP does not opt back in
        twilio.messages.create(to=number, from_=FROM, body="Still there?")

    assert post_inbound(events_emulator, "START", number)["opt_out_type"] == "START"
    assert twilio.messages.create(to=number, from_=FROM, body="Welcome back").status == "queued"

    fresh.wait_for(lambda: len(fresh.of("twilio/inbound")) >= 3)
    inbound = fresh.of("twilio/inbound")
    assert all(p["verified"] for p in inbound)
    forms = [p["form"] for p in inbound]
    assert [(f["Body"], f.get("OptOutType")) for f in forms] == [
        ("Stop ", "STOP"), ("HELP", "HELP"), ("START", "START")]
    assert all(f["From"] == number and f["To"] == FROM and f["MessageSid"].startswith("SM")
               and f["AccountSid"] == ACCOUNT_SID for f in forms)


def test_inbound_endpoint_requires_from_and_body(events_emulator):
    response = httpx.post(f"{events_emulator}/_emulator/inbound", data={"Body": "STOP"})
    assert response.status_code == 400


def test_failing_receiver_is_retried(fresh, events_emulator):
    fresh.fail_next = 2
    sendgrid = SendGridAPIClient(api_key=CREDENTIALS["sendgrid_api_key"], host=events_emulator)
    assert sendgrid.send(mail_to("ana@example.com")).status_code == 202
    fresh.wait_for(lambda: len(fresh.of("sendgrid")) == 1)
    assert fresh.of("sendgrid")[0]["verified"]  # re-signed per attempt, still valid


def test_receiver_down_never_blocks_the_send_and_is_dropped_with_a_log(
        tmp_path: Path, signing_key, caplog):
    dead = dead_url()
    with run_in_thread(tmp_path / "outbox.sqlite3", **CREDENTIALS, events_url=dead,
                       sendgrid_event_key=signing_key[0]) as url:
        started = time.monotonic()
        sendgrid = SendGridAPIClient(api_key=CREDENTIALS["sendgrid_api_key"], host=url)
        assert sendgrid.send(mail_to("ana@example.com")).status_code == 202
        assert time.monotonic() - started < 1.0

    poster = Poster(retries=2, backoff_s=0.01, delay_s=0)
    with caplog.at_level(logging.INFO, logger="nurture.emulator.events"):
        poster.submit(dead + "/webhooks/sendgrid", b"[]", {}, "test batch")
        assert poster.wait_idle(5)
    poster.close()
    assert "test batch" in caplog.text and "dropped after 3 attempts" in caplog.text


def test_no_events_unless_configured():
    events = ProviderEvents(events_url=None, sendgrid_event_key=None,
                            twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN)
    events.after_send([{"channel": "sms", "message_id": "SM1", "recipient": "+14155552671",
                        "request": {"To": "+14155552671", "From": FROM,
                                    "StatusCallback": "http://127.0.0.1:9/x"}}])
    assert not events.enabled and events.poster._thread is None
    assert events.inbound("+14155552671", "STOP")["posted"] is False
    assert events.opted_out("+14155552671")


def test_paths_and_headers_match_the_receiver():
    from nurture.emulator import events
    from nurture.webhooks import app

    assert (events.SENDGRID_PATH, events.TWILIO_INBOUND_PATH) == (
        app.SENDGRID_PATH, app.TWILIO_INBOUND_PATH)
    assert (events.SENDGRID_SIGNATURE, events.SENDGRID_TIMESTAMP, events.TWILIO_SIGNATURE) == (
        app.SENDGRID_SIGNATURE, app.SENDGRID_TIMESTAMP, app.TWILIO_SIGNATURE)


def dead_url() -> str:
    """A URL on a port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"
