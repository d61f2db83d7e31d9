"""Unsubscribe and survey tokens: opaque, unforgeable, expiring where asked, rotatable."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from nurture.exceptions import ConfigurationError, NurtureError
from nurture.tokens import InvalidToken, RetiredKey, TokenClaims, TokenSigner, generate_key

CONTACT = "contact-000123"
NOW = 1_800_000_000.0


class Clock:
    """Time under the test's control: no sleeping."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key() -> str:
    return generate_key()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(key: str, clock: Clock) -> TokenSigner:
    return TokenSigner([key], clock=clock)


def test_round_trip(signer: TokenSigner) -> None:
    token = signer.issue("survey", CONTACT, "email", survey_id="nps-2026q4")
    claims = signer.verify(token, purpose="survey")
    assert claims == TokenClaims(purpose="survey", contact_id=CONTACT, channel="email",
                                 extra={"survey_id": "nps-2026q4"},
                                 issued_at=datetime.fromtimestamp(NOW, UTC))


def test_url_safe_and_short(signer: TokenSigner) -> None:
    token = signer.issue("unsubscribe", CONTACT, "email")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert len(token) < 200


def _decodings(token: str) -> list[bytes]:
    """The token read as base64 at every alignment, to find anything encoded inside it."""
    found = []
    for shift in range(4):
        part = token[shift:]
        part = part[: len(part) - len(part) % 4]
        found.append(base64.urlsafe_b64decode(part))
    return found


def test_contact_id_cannot_be_read(signer: TokenSigner) -> None:
    token = signer.issue("unsubscribe", CONTACT, "sms")
    for needle in (CONTACT, "000123", "sms", "unsubscribe"):
        assert needle not in token
        for decoded in _decodings(token):
            assert needle.encode() not in decoded
            assert base64.urlsafe_b64encode(needle.encode()).rstrip(b"=")[:-1] not in decoded


def test_same_claims_give_different_tokens(signer: TokenSigner) -> None:
    assert signer.issue("unsubscribe", CONTACT, "email") != signer.issue(
        "unsubscribe", CONTACT, "email")


def test_every_single_character_change_is_refused(signer: TokenSigner) -> None:
    token = signer.issue("unsubscribe", CONTACT, "email")
    for i, char in enumerate(token):
        for other in {"A", "B", "Q", "g", "w", "-", "_", "0"} - {char}:
            with pytest.raises(InvalidToken):
                signer.verify(token[:i] + other + token[i + 1:], purpose="unsubscribe")


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1], lambda t: t + "A", lambda t: t + "=", lambda t: t[1:], lambda t: "",
    lambda t: t.replace(t[5], "%"), lambda t: t * 10,
])
def test_malformed_tokens_are_refused(signer: TokenSigner, mangle) -> None:
    token = signer.issue("unsubscribe", CONTACT, "email")
    with pytest.raises(InvalidToken):
        signer.verify(mangle(token), purpose="unsubscribe")


def test_forged_with_another_key_is_refused(signer: TokenSigner, clock: Clock) -> None:
    forged = TokenSigner([generate_key()], clock=clock).issue("unsubscribe", CONTACT, "email")
    with pytest.raises(InvalidToken, match="bad signature"):
        signer.verify(forged, purpose="unsubscribe")


def test_wrong_purpose_is_refused(signer: TokenSigner) -> None:
    token = signer.issue("unsubscribe", CONTACT, "email")
    with pytest.raises(InvalidToken, match="wrong purpose"):
        signer.verify(token, purpose="survey")


def test_expiry(signer: TokenSigner, clock: Clock) -> None:
    survey = signer.issue("survey", CONTACT, "email", survey_id="s1")
    unsubscribe = signer.issue("unsubscribe", CONTACT, "email")

    clock.now = NOW + timedelta(days=89).total_seconds()
    assert signer.verify(survey, purpose="survey").contact_id == CONTACT
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(survey, purpose="survey", max_age=timedelta(days=30))

    clock.now = NOW + timedelta(days=91).total_seconds()
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(survey, purpose="survey")  # the default for surveys: 90 days

    clock.now = NOW + timedelta(days=3650).total_seconds()
    assert signer.verify(unsubscribe, purpose="unsubscribe").channel == "email"


def test_token_from_the_future_is_refused(signer: TokenSigner, clock: Clock) -> None:
    token = signer.issue("unsubscribe", CONTACT, "email")
    clock.now = NOW - 3600
    with pytest.raises(InvalidToken, match="future"):
        signer.verify(token, purpose="unsubscribe")


def test_rotation(clock: Clock) -> None:
    old, new = generate_key(), generate_key()
    old_token = TokenSigner([old], clock=clock).issue("unsubscribe", CONTACT, "email")

    rotated = TokenSigner([new, old], clock=clock)
    assert rotated.verify(old_token, purpose="unsubscribe").contact_id == CONTACT
    new_token = rotated.issue("unsubscribe", CONTACT, "email")
    assert TokenSigner([new], clock=clock).verify(new_token, purpose="unsubscribe")
    with pytest.raises(InvalidToken):
        TokenSigner([old], clock=clock).verify(new_token, purpose="unsubscribe")

    retired = TokenSigner([new], clock=clock)
    with pytest.raises(InvalidToken, match="bad signature"):
        retired.verify(old_token, purpose="unsubscribe")


def test_a_retired_key_is_accepted_until_its_grace_period_ends(clock: Clock) -> None:
    old, new = generate_key(), generate_key()
    old_token = TokenSigner([old], clock=clock).issue("unsubscribe", CONTACT, "email")
    until = datetime.fromtimestamp(NOW + 86_400, UTC)
    rotated = TokenSigner([new, RetiredKey(old, until)], clock=clock)
    assert rotated.verify(old_token, purpose="unsubscribe").contact_id == CONTACT
    assert rotated.expired_keys() == []
    new_token = rotated.issue("unsubscribe", CONTACT, "email")
    with pytest.raises(InvalidToken):  # the new key signs, never the retired one
        TokenSigner([old], clock=clock).verify(new_token, purpose="unsubscribe")

    clock.now = NOW + 86_400
    with pytest.raises(InvalidToken, match="bad signature"):
        rotated.verify(old_token, purpose="unsubscribe")
    assert rotated.verify(new_token, purpose="unsubscribe").contact_id == CONTACT
    assert rotated.expired_keys() == [0]


def test_the_signing_key_cannot_be_a_retired_one() -> None:
    with pytest.raises(ConfigurationError, match="first key signs"):
        TokenSigner([RetiredKey(generate_key())])


def test_grace_period_from_the_connection(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    older, old, new = generate_key(), generate_key(), generate_key()
    tokens = {name: TokenSigner([key], clock=clock).issue("unsubscribe", CONTACT, "email")
              for name, key in (("older", older), ("old", old))}
    ends = datetime.fromtimestamp(NOW + 3600, UTC)
    _connection(monkeypatch, conn_type="generic", password=new, extra={"previous_keys": [
        {"key": old, "until": ends.strftime("%Y-%m-%dT%H:%M:%S")},  # naive: UTC
        older]})
    signer = TokenSigner.from_connection(clock=clock)
    assert all(signer.verify(t, purpose="unsubscribe") for t in tokens.values())
    clock.now = NOW + 3600
    assert signer.verify(tokens["older"], purpose="unsubscribe")  # no until: until removed
    with pytest.raises(InvalidToken):
        signer.verify(tokens["old"], purpose="unsubscribe")
    assert signer.expired_keys() == [0]


@pytest.mark.parametrize("entry", [
    {"key": "KEY", "until": "next spring"},
    {"key": "KEY", "until": 20270101},
    {"key": "KEY", "valid": "2027-01-01"},
    {"until": "2027-01-01"},
    ["KEY"],
])
def test_a_malformed_grace_period_is_a_configuration_error(monkeypatch, entry) -> None:
    key = generate_key()
    entry = json.loads(json.dumps(entry).replace("KEY", key))
    _connection(monkeypatch, conn_type="generic", password=generate_key(),
                extra={"previous_keys": [entry]})
    with pytest.raises(ConfigurationError, match="nurture_signing: previous_keys #0") as caught:
        TokenSigner.from_connection()
    assert key not in str(caught.value)


def test_invalid_token_is_a_nurture_error() -> None:
    assert issubclass(InvalidToken, NurtureError)


@pytest.mark.parametrize("keys", [[], ["not-a-key"], "a-single-string", [b"short"]])
def test_bad_keys_are_configuration_errors(keys) -> None:
    with pytest.raises(ConfigurationError):
        TokenSigner(keys)


def test_bad_claims_are_refused_at_issue(signer: TokenSigner) -> None:
    with pytest.raises(ValueError):
        signer.issue("unsubscribe", "", "email")
    with pytest.raises(ValueError):
        signer.issue("survey", CONTACT, "email", survey_id=42)  # type: ignore[arg-type]


def _connection(monkeypatch: pytest.MonkeyPatch, **fields) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NURTURE_SIGNING", json.dumps(fields))


def test_from_connection_with_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = generate_key(), generate_key()
    old_token = TokenSigner([old]).issue("unsubscribe", CONTACT, "email")

    _connection(monkeypatch, conn_type="generic", password=new,
                extra={"previous_keys": [old]})
    signer = TokenSigner.from_connection()
    assert signer.verify(old_token, purpose="unsubscribe").contact_id == CONTACT
    assert TokenSigner([new]).verify(signer.issue("survey", CONTACT, "sms"), purpose="survey")

    _connection(monkeypatch, conn_type="generic", password=new)
    with pytest.raises(InvalidToken):
        TokenSigner.from_connection().verify(old_token, purpose="unsubscribe")


def test_from_connection_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NURTURE_SIGNING", raising=False)
    with pytest.raises(ConfigurationError, match="nurture_signing"):
        TokenSigner.from_connection()


@pytest.mark.parametrize("fields", [
    {"conn_type": "generic"},
    {"conn_type": "generic", "password": "not-a-fernet-key"},
    {"conn_type": "generic", "password": "KEY", "extra": {"previous_keys": ["nope"]}},
    {"conn_type": "generic", "password": "KEY", "extra": {"previous_keys": {"a": 1}}},
])
def test_from_connection_malformed(monkeypatch: pytest.MonkeyPatch, fields: dict) -> None:
    key = generate_key()
    if fields.get("password") == "KEY":
        fields = {**fields, "password": key}
    _connection(monkeypatch, **fields)
    with pytest.raises(ConfigurationError, match="nurture_signing") as caught:
        TokenSigner.from_connection()
    assert key not in str(caught.value)
