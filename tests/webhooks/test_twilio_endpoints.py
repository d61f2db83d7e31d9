"""POST /webhooks/twilio/status and /inbound through HTTP against the embedded warehouse.

Signatures are made by twilio's RequestValidator over the public URL, as Twilio makes them;
the test client calls the app as http://testserver, like a proxy would forward it.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator

from nurture.warehouse import connect
from nurture.webhooks import create_app

from .conftest import MAX_BODY, PUBLIC_URL, TWILIO_TOKEN, Twilio, count

STATUS = "/webhooks/twilio/status"
INBOUND = "/webhooks/twilio/inbound"
STATUS_TABLE = "raw.twilio_status_callbacks"
INBOUND_TABLE = "raw.twilio_inbound_messages"


def status(sid: str, state: str = "delivered") -> dict[str, str]:
    return {
        "AccountSid": "AC00000000000000000000000000000000",
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": state,
        "SmsStatus": state,
        "To": "+15005550006",
        "From": "+15005550001",
        "ErrorCode": "",
    }


def inbound(sid: str, body: str = "STOP") -> dict[str, str]:
    return {"MessageSid": sid, "From": "+15005550006", "To": "+15005550001", "Body": body}


def test_status_callback_is_stored_raw(twilio, raw_tables, prefix) -> None:
    params = status(f"{prefix}SM1")
    response = twilio.post(STATUS, params)
    assert response.status_code == 200
    assert response.json() == {"stored": 1}
    with connect(raw_tables) as conn, conn.cursor() as cur:
        cur.execute(
            f"select message_sid, message_status, payload from {STATUS_TABLE}"
            " where message_sid like %s",
            (prefix + "%",),
        )
        assert cur.fetchall() == [(params["MessageSid"], "delivered", params)]


def test_same_status_twice_is_one_row_a_new_status_is_another(twilio, raw_tables, prefix) -> None:
    sid = f"{prefix}SM2"
    assert twilio.post(STATUS, status(sid, "sent")).json() == {"stored": 1}
    assert twilio.post(STATUS, status(sid, "sent")).json() == {"stored": 0}
    assert twilio.post(STATUS, status(sid, "delivered")).json() == {"stored": 1}
    assert count(raw_tables, STATUS_TABLE, prefix) == 2


def test_query_string_is_part_of_the_signed_url(twilio, raw_tables, prefix) -> None:
    response = twilio.post(STATUS, status(f"{prefix}SM3"), query="program=onboarding&step=a%20b")
    assert response.json() == {"stored": 1}


def test_the_callback_urls_ids_are_kept_with_the_status(twilio, raw_tables, prefix) -> None:
    """The ledger id in the signed callback URL is what lets reconcile tie a status to a
    message whose send answer was lost; the form's own fields are never overwritten."""
    params = status(f"{prefix}SM4")
    query = "ledger_id=0b0e1c9a-3c4e-4f55-9d0a-111111111111&program=onboarding&step=check_in"
    assert twilio.post(STATUS, params, query=query + "&MessageStatus=failed").json() == {
        "stored": 1}
    with connect(raw_tables) as conn, conn.cursor() as cur:
        cur.execute(f"select payload from {STATUS_TABLE} where message_sid = %s",
                    (params["MessageSid"],))
        (payload,) = cur.fetchone()
    assert payload == {**params, "ledger_id": "0b0e1c9a-3c4e-4f55-9d0a-111111111111",
                       "program": "onboarding", "step": "check_in"}


def test_signature_over_the_requests_own_host_is_refused(twilio, raw_tables, prefix) -> None:
    """Behind a proxy the host the app sees is not what Twilio signed: only public_url counts."""
    own = twilio.post(STATUS, status(f"{prefix}SM4"), signed_url=f"http://testserver{STATUS}")
    assert own.status_code == 403
    assert count(raw_tables, STATUS_TABLE, prefix) == 0


def test_forged_status_callbacks_are_refused(twilio, client, raw_tables, prefix) -> None:
    params = status(f"{prefix}SM5")
    assert twilio.post(STATUS, params, token="wrong-token").status_code == 403
    assert twilio.post(STATUS, params, signed_url=PUBLIC_URL + INBOUND).status_code == 403
    unsigned = client.post(
        STATUS,
        content=urlencode(params).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unsigned.status_code == 403
    signed = twilio.post(STATUS, params).request
    tampered = client.post(
        STATUS,
        content=urlencode({**params, "MessageStatus": "failed"}).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signed.headers["X-Twilio-Signature"],
        },
    )
    assert tampered.status_code == 403
    assert count(raw_tables, STATUS_TABLE, prefix) == 1  # only the genuine one


@pytest.mark.parametrize("missing", ["MessageSid", "MessageStatus"])
def test_signed_status_without_its_key_is_refused(twilio, raw_tables, prefix, missing) -> None:
    params = status(f"{prefix}SM6")
    params[missing] = ""
    assert twilio.post(STATUS, params).status_code == 400
    del params[missing]
    assert twilio.post(STATUS, params).status_code == 400
    assert count(raw_tables, STATUS_TABLE, prefix) == 0


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data", ""])
def test_status_with_wrong_content_type_is_refused(twilio, raw_tables, prefix, content_type):
    response = twilio.post(STATUS, status(f"{prefix}SM7"), content_type=content_type)
    assert response.status_code == 400
    assert count(raw_tables, STATUS_TABLE, prefix) == 0


def test_oversized_status_is_refused(twilio, raw_tables, prefix) -> None:
    params = {**status(f"{prefix}SM8"), "Padding": "x" * MAX_BODY}
    assert twilio.post(STATUS, params).status_code == 413
    assert count(raw_tables, STATUS_TABLE, prefix) == 0


def test_inbound_message_is_stored_once_and_answered_with_empty_twiml(
    twilio, raw_tables, prefix
) -> None:
    params = inbound(f"{prefix}SM9", "STOP")
    first = twilio.post(INBOUND, params)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/xml")
    assert "<Response></Response>" in first.text
    assert first.headers["X-Nurture-Stored"] == "1"
    assert twilio.post(INBOUND, params).headers["X-Nurture-Stored"] == "0"
    with connect(raw_tables) as conn, conn.cursor() as cur:
        cur.execute(
            f"select payload from {INBOUND_TABLE} where message_sid = %s", (params["MessageSid"],)
        )
        assert cur.fetchall() == [(params,)]


def test_forged_inbound_message_is_refused(twilio, raw_tables, prefix) -> None:
    response = twilio.post(INBOUND, inbound(f"{prefix}SM10"), token="wrong-token")
    assert response.status_code == 403
    assert count(raw_tables, INBOUND_TABLE, prefix) == 0


def test_signed_inbound_without_message_sid_is_refused(twilio, raw_tables, prefix) -> None:
    params = inbound(f"{prefix}SM11")
    del params["MessageSid"]
    assert twilio.post(INBOUND, params).status_code == 400


def test_unconfigured_token_refuses_rather_than_accepting_unsigned(raw_tables, prefix) -> None:
    app = create_app(
        warehouse_url=raw_tables,
        public_url=PUBLIC_URL,
        sendgrid_public_key=None,
        twilio_auth_token=None,
    )
    unconfigured = Twilio(TestClient(app))
    for path, params in ((STATUS, status(f"{prefix}SM12")), (INBOUND, inbound(f"{prefix}SM12"))):
        response = unconfigured.post(path, params)
        assert response.status_code == 503
        assert "auth token" in response.json()["detail"]
    assert count(raw_tables, STATUS_TABLE, prefix) == count(raw_tables, INBOUND_TABLE, prefix) == 0


def post_signed_pairs(client, pairs: list[tuple[str, str]]):
    """Post form pairs (repeated names kept) signed as Twilio signs them."""
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        PUBLIC_URL + STATUS, ImmutableMultiDict(pairs)
    )
    return client.post(
        STATUS,
        content=urlencode(pairs).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


def test_repeated_form_names_are_verified_and_kept(client, raw_tables, prefix) -> None:
    """Twilio signs every value of a repeated name; the raw payload keeps them all."""
    pairs = [("MessageSid", f"{prefix}SM13"), ("MessageStatus", "sent"), ("Tag", "b"), ("Tag", "a")]
    response = post_signed_pairs(client, pairs)
    assert response.json() == {"stored": 1}
    with connect(raw_tables) as conn, conn.cursor() as cur:
        cur.execute(f"select payload from {STATUS_TABLE} where message_sid = %s", (pairs[0][1],))
        assert cur.fetchone()[0]["Tag"] == ["b", "a"]


def test_repeated_message_sid_is_refused(client, raw_tables, prefix) -> None:
    pairs = [
        ("MessageSid", f"{prefix}SM14"),
        ("MessageSid", f"{prefix}SM15"),
        ("MessageStatus", "sent"),
    ]
    response = post_signed_pairs(client, pairs)
    assert response.status_code == 400
    assert count(raw_tables, STATUS_TABLE, prefix) == 0
