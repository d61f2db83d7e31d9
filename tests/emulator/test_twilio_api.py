"""Twilio Messages through the real SDK over HTTP."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from nurture.emulator.twilio_api import num_segments

from .conftest import CREDENTIALS

ACCOUNT_SID, AUTH_TOKEN = CREDENTIALS["twilio_account_sid"], CREDENTIALS["twilio_auth_token"]
SERVICE_SID = "MG" + "fedcba9876543210" * 2
FROM, TO = "+15005550006", "+14155552671"


def twilio_client(base_url: str, token: str = AUTH_TOKEN) -> Client:
    client = Client(ACCOUNT_SID, token)
    client.api.base_url = base_url  # the Api domain's base URL (default https://api.twilio.com)
    return client


@pytest.fixture
def twilio(emulator_url: str) -> Client:
    return twilio_client(emulator_url)


def rejected(create, **params) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        create(**params)
    return caught.value


@pytest.mark.parametrize(("body", "segments"), [
    ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),  # GSM-7: 160, then 153
    ("€" * 80, 1), ("€" * 81, 2),                                    # extension chars cost 2
    ("ж" * 70, 1), ("ж" * 71, 2), ("ж" * 134, 2), ("ж" * 135, 3),    # UCS-2: 70, then 67
    ("👍" * 35, 1), ("👍" * 36, 2),                                  # surrogate pairs cost 2
])
def test_num_segments(body, segments):
    assert num_segments(body) == segments


def test_create_with_from_returns_the_message_resource(twilio, outbox):
    callback = "https://hooks.nurture.example/twilio/status?program=winback&step=sms1&ledger_id=42"
    message = twilio.messages.create(to=TO, from_=FROM, body="Your cart misses you",
                                     status_callback=callback)

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert (message.status, message.num_segments, message.num_media) == ("queued", "1", "0")
    assert (message.to, message.from_, message.messaging_service_sid) == (TO, FROM, None)
    assert (message.account_sid, message.direction) == (ACCOUNT_SID, "outbound-api")
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"
    assert message.price is None and message.error_code is None
    [record] = outbox.messages()
    assert record["message_id"] == message.sid
    assert (record["channel"], record["recipient"], record["sender"]) == ("sms", TO, FROM)
    assert (record["program"], record["step"], record["ledger_id"]) == ("winback", "sms1", "42")
    assert record["text"] == "Your cart misses you"
    assert record["request"]["StatusCallback"] == callback


def test_segments_for_gsm7_and_ucs2_bodies(twilio):
    create = twilio.messages.create
    assert create(to=TO, from_=FROM, body="a" * 161).num_segments == "2"
    assert create(to=TO, from_=FROM, body="Привет! " * 9).num_segments == "2"   # 72 UCS-2 units
    assert create(to=TO, from_=FROM, body="Hello 👋").num_segments == "1"


def test_create_with_messaging_service(twilio, outbox):
    message = twilio.messages.create(to=TO, messaging_service_sid=SERVICE_SID, body="Hi")
    assert (message.status, message.messaging_service_sid, message.from_) == (
        "accepted", SERVICE_SID, None)
    assert message.num_segments == "0"  # no sender picked yet, as documented by Twilio
    assert outbox.messages()[0]["sender"] == SERVICE_SID


def test_raw_response_is_201_with_rfc2822_dates(emulator_url):
    response = httpx.post(f"{emulator_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
                          auth=(ACCOUNT_SID, AUTH_TOKEN), data={"To": TO, "From": FROM,
                                                               "Body": "x"})
    assert response.status_code == 201
    resource = response.json()
    assert parsedate_to_datetime(resource["date_created"]).utcoffset().total_seconds() == 0
    assert resource["subresource_uris"]["media"] == resource["uri"].replace(".json",
                                                                            "/Media.json")


def test_wrong_token_is_unauthorized(emulator_url, outbox):
    client = twilio_client(emulator_url, token="wrong")
    error = rejected(client.messages.create, to=TO, from_=FROM, body="Hi")
    assert (error.status, error.code) == (401, 20003)
    assert outbox.messages() == []


def test_another_accounts_path_is_unauthorized(twilio):
    other = "AC" + "9" * 32
    error = rejected(twilio.api.v2010.accounts(other).messages.create, to=TO, from_=FROM,
                     body="Hi")
    assert (error.status, error.code) == (401, 20003)


@pytest.mark.parametrize(("params", "code"), [
    ({"to": "4155552671", "from_": FROM, "body": "Hi"}, 21211),
    ({"to": "+0123", "from_": FROM, "body": "Hi"}, 21211),
    ({"to": TO, "from_": FROM}, 21602),
    ({"to": TO, "body": "Hi"}, 21603),
    ({"to": TO, "messaging_service_sid": "MG123", "body": "Hi"}, 21705),
    ({"to": TO, "from_": FROM, "body": "x" * 1601}, 21617),
])
def test_invalid_requests_get_twilio_error_codes(twilio, outbox, params, code):
    error = rejected(twilio.messages.create, **params)
    assert (error.status, error.code) == (400, code)
    assert outbox.messages() == []


def test_error_body_shape(emulator_url):
    response = httpx.post(f"{emulator_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
                          auth=(ACCOUNT_SID, AUTH_TOKEN), data={"To": "555", "Body": "x"})
    assert response.status_code == 400
    assert response.json() == {
        "code": 21211, "message": "The 'To' number 555 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}


def test_unknown_path_is_a_twilio_404(emulator_url):
    response = httpx.get(f"{emulator_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
                         auth=(ACCOUNT_SID, AUTH_TOKEN))
    assert response.status_code == 404
    assert response.json()["code"] == 20404
