"""Signature checks against the SDKs' own code as the peer: what the sendgrid package's
event-webhook helper and twilio's RequestValidator accept, we accept; what they refuse, we
refuse. Keys and tokens are generated here, never real ones.
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sendgrid.helpers.eventwebhook import EventWebhook
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator

from nurture.webhooks.signatures import (
    load_sendgrid_key,
    twilio_signature,
    verify_sendgrid,
    verify_twilio,
)

from .conftest import public_key_b64, sendgrid_sign

TIMESTAMP = "1700000000"
BODY = json.dumps(
    [
        {"sg_event_id": "a1", "event": "delivered", "email": "ada@example.com"},
        {"sg_event_id": "a2", "event": "open", "email": "ada@example.com"},
    ]
).encode()


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def public(key: ec.EllipticCurvePrivateKey) -> str:
    return public_key_b64(key)


def both_verify(public: str, body: bytes, signature: str, timestamp: str) -> tuple[bool, bool]:
    """(ours, the sendgrid SDK's) verdict on the same request."""
    sdk = EventWebhook(public).verify_signature(body.decode(), signature, timestamp)
    return verify_sendgrid(public, body, signature, timestamp), sdk


def test_sendgrid_good_signature_is_accepted_like_the_sdk(key, public) -> None:
    signature = sendgrid_sign(key, BODY, TIMESTAMP)
    assert both_verify(public, BODY, signature, TIMESTAMP) == (True, True)


def test_sendgrid_signature_from_another_key_is_refused(public) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    signature = sendgrid_sign(other, BODY, TIMESTAMP)
    assert both_verify(public, BODY, signature, TIMESTAMP) == (False, False)


def test_sendgrid_modified_or_reordered_body_is_refused(key, public) -> None:
    signature = sendgrid_sign(key, BODY, TIMESTAMP)
    reordered = json.dumps(list(reversed(json.loads(BODY)))).encode()
    modified = BODY.replace(b"delivered", b"bounce")
    reserialised = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    for body in (reordered, modified, reserialised, BODY + b" "):
        assert both_verify(public, body, signature, TIMESTAMP) == (False, False)


def test_sendgrid_signature_is_bound_to_its_timestamp(key, public) -> None:
    signature = sendgrid_sign(key, BODY, TIMESTAMP)
    assert both_verify(public, BODY, signature, "1700000001") == (False, False)


def test_sendgrid_forged_and_truncated_signatures_are_refused(key, public) -> None:
    der = base64.b64decode(sendgrid_sign(key, BODY, TIMESTAMP))
    forged = base64.b64encode(bytes(len(der))).decode()
    truncated_der = base64.b64encode(der[:-4]).decode()
    for signature in (forged, truncated_der):
        assert both_verify(public, BODY, signature, TIMESTAMP) == (False, False)
    # Not even base64: the SDK raises, we must just say no.
    for signature in ("", "not base64!", base64.b64encode(der).decode()[:-3]):
        assert verify_sendgrid(public, BODY, signature, TIMESTAMP) is False


def test_sendgrid_key_may_be_pasted_as_pem(key, public) -> None:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signature = sendgrid_sign(key, BODY, TIMESTAMP)
    assert verify_sendgrid(pem.decode(), BODY, signature, TIMESTAMP)


@pytest.mark.parametrize("bad", ["", "not a key", base64.b64encode(b"garbage").decode()])
def test_sendgrid_malformed_key_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ValueError, match="SendGrid"):
        load_sendgrid_key(bad)


def test_sendgrid_key_must_be_p256() -> None:
    for private in (ec.generate_private_key(ec.SECP384R1()), rsa.generate_private_key(65537, 2048)):
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(ValueError, match="P-256"):
            load_sendgrid_key(base64.b64encode(der).decode())


TOKEN = "twilio-test-token"
URL = "https://hooks.nurture.example/webhooks/twilio/status?program=onboarding"
PARAMS = {
    "MessageSid": "SM0123",
    "MessageStatus": "delivered",
    "To": "+15005550006",
    "Body": "Héllo, wörld & more+",
    "ErrorCode": "",
}


@pytest.mark.parametrize(
    "params",
    [
        PARAMS,
        {},
        ImmutableMultiDict([("b", "2"), ("a", "1"), ("b", "1"), ("b", "2")]),
    ],
)
def test_twilio_signature_matches_the_sdk(params) -> None:
    expected = RequestValidator(TOKEN).compute_signature(URL, params)
    if isinstance(params, ImmutableMultiDict):  # the receiver passes repeated names as lists
        params = {name: params.getlist(name) for name in params}
    assert twilio_signature(TOKEN, URL, params) == expected


def test_twilio_good_signature_is_accepted() -> None:
    signature = RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    assert verify_twilio(TOKEN, URL, PARAMS, signature)


def test_twilio_default_port_spelled_either_way_is_accepted_like_the_sdk() -> None:
    with_port = URL.replace("example/", "example:443/")
    signature = RequestValidator(TOKEN).compute_signature(with_port, PARAMS)
    assert RequestValidator(TOKEN).validate(URL, PARAMS, signature)
    assert verify_twilio(TOKEN, URL, PARAMS, signature)
    assert verify_twilio(
        TOKEN, with_port, PARAMS, RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    )


def test_twilio_forged_or_altered_requests_are_refused() -> None:
    signature = RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    other_token = RequestValidator("another-token").compute_signature(URL, PARAMS)
    refused = [
        (URL, PARAMS, other_token),
        (URL, PARAMS, signature[:-2]),
        (URL, PARAMS, ""),
        (URL, PARAMS, "x" * len(signature)),
        (URL, {**PARAMS, "MessageStatus": "failed"}, signature),
        (URL, {**PARAMS, "Extra": "1"}, signature),
        (URL.replace("hooks.", "evil."), PARAMS, signature),
        (URL.replace("https:", "http:"), PARAMS, signature),
        (URL.replace("onboarding", "webinar"), PARAMS, signature),
    ]
    for url, params, sig in refused:
        assert RequestValidator(TOKEN).validate(url, params, sig) is False
        assert verify_twilio(TOKEN, url, params, sig) is False
