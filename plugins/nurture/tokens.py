"""Opaque, signed tokens for links that act on a contact without a login.

Unsubscribe and survey links carry a token in their path. Anyone holding a link can use it,
so a token must not be forgeable, alterable or enumerable, and it must not reveal whose it
is: a signed but readable payload would put contact ids into mail logs, proxies and browser
histories. Fernet (AES-128-CBC + HMAC-SHA256 with a timestamp) encrypts and authenticates the
claims; MultiFernet gives key rotation: new tokens use the current key, older keys keep
verifying during a grace period, and removing a key retires every token it issued.

Keys come from the Airflow connection `nurture_signing`: the password is the current key,
the extra `previous_keys` a list of older keys still accepted — the grace period. An entry is
either a key, accepted until it is removed from the list, or `{"key": ..., "until":
"2027-06-30"}`, accepted before that UTC date or time and refused from then on without anyone
having to remember to remove it (`nurture doctor` lists keys whose time is up). Rotating:
generate a key, make it the password, move the old one into `previous_keys` with an `until`
as far off as its links must work (unsubscribe links live in old mail for years; surveys
expire after 90 days anyway).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import fernet

from nurture.exceptions import ConfigurationError, NurtureError

CONN_ID = "nurture_signing"

# Used when `verify` is given no max_age. Unsubscribe links must keep working as long as the
# mail that carries them may be read, so they do not expire; key rotation retires them.
MAX_AGE: dict[str, timedelta | None] = {
    "unsubscribe": None,
    "survey": timedelta(days=90),
}

MAX_TOKEN_LENGTH = 1024  # refuse oversized input before any crypto work
_CLOCK_SKEW = 60  # seconds a token may appear to come from the future (as Fernet allows)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")


class InvalidToken(NurtureError):
    """A token was refused; the message is a short reason for logs, never for the visitor."""


@dataclass(frozen=True)
class RetiredKey:
    """A previous key, still accepted (never used to sign) before `until`, if given."""

    key: str | bytes
    until: datetime | None = None


@dataclass(frozen=True)
class TokenClaims:
    purpose: str
    contact_id: str
    channel: str
    extra: dict[str, str]
    issued_at: datetime


def generate_key() -> str:
    """A new random key, in the form the `nurture_signing` connection expects."""
    return fernet.Fernet.generate_key().decode("ascii")


class TokenSigner:
    """Issues and verifies tokens; the first key signs, every key verifies."""

    def __init__(self, keys: Sequence[str | bytes | RetiredKey], *,
                 clock: Callable[[], float] = time.time) -> None:
        if isinstance(keys, str | bytes) or not keys:
            raise ConfigurationError("token signing needs a list of at least one key")
        if isinstance(keys[0], RetiredKey):
            raise ConfigurationError("the first key signs: it cannot be a retired key")
        self._ciphers: list[tuple[fernet.Fernet, float | None]] = []
        for position, key in enumerate(keys):
            retired = key if isinstance(key, RetiredKey) else RetiredKey(key)
            try:
                cipher = fernet.Fernet(retired.key)
            except (ValueError, TypeError, binascii.Error):
                # Never echo the key itself: it is a secret.
                raise ConfigurationError(
                    f"signing key #{position} is not a Fernet key (32 url-safe base64 bytes)"
                ) from None
            until = retired.until.timestamp() if retired.until else None
            self._ciphers.append((cipher, until))
        self._clock = clock

    def expired_keys(self) -> list[int]:
        """Positions (in `previous_keys`, from 0) of retired keys past their `until`."""
        now = self._clock()
        return [position - 1 for position, (_, until) in enumerate(self._ciphers)
                if until is not None and now >= until]

    def _accepting(self) -> fernet.MultiFernet:
        now = self._clock()
        return fernet.MultiFernet([cipher for cipher, until in self._ciphers
                                   if until is None or now < until])

    @classmethod
    def from_connection(cls, conn_id: str = CONN_ID, *,
                        get_connection: Callable[[str], Any] | None = None,
                        **options: Any) -> TokenSigner:
        """Keys from a connection: password = current key, extra `previous_keys` = older.

        `get_connection` defaults to the Task SDK's (tasks; environment and secrets backends
        elsewhere); a server outside Airflow passes one that also reads the metadata DB."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowException

        try:
            conn = (get_connection or BaseHook.get_connection)(conn_id)
        except AirflowException as exc:
            raise ConfigurationError(f"connection {conn_id} is not defined: {exc}") from None
        if not conn.password:
            raise ConfigurationError(f"connection {conn_id} has no signing key (its password)")
        try:
            previous = retired_keys(conn.extra_dejson.get("previous_keys"))
            return cls([conn.password, *previous], **options)
        except ConfigurationError as exc:
            raise ConfigurationError(f"connection {conn_id}: {exc}") from None

    def issue(self, purpose: str, contact_id: str, channel: str, **extra: str) -> str:
        """A URL-safe token (no padding) carrying the claims, encrypted with the current key."""
        for name, value in (("purpose", purpose), ("contact_id", contact_id),
                            ("channel", channel)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"token claim {name} must be a non-empty string")
        if not all(isinstance(value, str) for value in extra.values()):
            raise ValueError("extra token claims must be strings")
        # A compact list keeps tokens short; field names would add bytes, not meaning.
        payload = json.dumps([purpose, contact_id, channel, extra], separators=(",", ":"),
                             ensure_ascii=False).encode()
        token = self._ciphers[0][0].encrypt_at_time(payload, int(self._clock()))
        return token.decode("ascii").rstrip("=")

    def verify(self, token: str, *, purpose: str,
               max_age: timedelta | None = None) -> TokenClaims:
        """The claims of a genuine, unexpired token for `purpose`, or InvalidToken.

        `max_age` None means the purpose's default from MAX_AGE (no expiry if it has none).
        """
        raw = self._canonical(token)
        accepting = self._accepting()
        try:
            payload = accepting.decrypt(raw)
            issued = accepting.extract_timestamp(raw)
        except fernet.InvalidToken:
            # Fernet cannot tell a forged token from one signed by a retired key, nor can we.
            raise InvalidToken("bad signature: tampered, forged or signed with a retired key"
                               ) from None
        try:
            claimed, contact_id, channel, extra = json.loads(payload)
            fields = (claimed, contact_id, channel, *extra.keys(), *extra.values())
            if not all(isinstance(field, str) for field in fields):
                raise TypeError
        except (ValueError, TypeError, AttributeError):
            raise InvalidToken("unexpected payload") from None
        if claimed != purpose:
            raise InvalidToken(f"wrong purpose: a {claimed} token used for {purpose}")
        now = self._clock()
        if issued > now + _CLOCK_SKEW:
            raise InvalidToken("issued in the future")
        limit = max_age if max_age is not None else MAX_AGE.get(purpose)
        if limit is not None and now - issued > limit.total_seconds():
            raise InvalidToken(f"expired: older than {limit}")
        return TokenClaims(purpose=claimed, contact_id=contact_id, channel=channel,
                           extra=extra, issued_at=datetime.fromtimestamp(issued, UTC))

    @staticmethod
    def _canonical(token: str) -> bytes:
        """Padded Fernet form of a token, refusing any other spelling of the same bytes.

        Base64 ignores the unused low bits of the last character, so two strings can decode
        alike; accepting only the one we would issue makes every changed character fail.
        """
        if (not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH
                or not _TOKEN_CHARS.fullmatch(token)):
            raise InvalidToken("malformed token")
        padded = token + "=" * (-len(token) % 4)
        try:
            data = base64.urlsafe_b64decode(padded)
        except (binascii.Error, ValueError):
            raise InvalidToken("malformed token") from None
        if base64.urlsafe_b64encode(data).decode("ascii").rstrip("=") != token:
            raise InvalidToken("malformed token")
        return padded.encode("ascii")


def retired_keys(previous: Any) -> list[RetiredKey]:
    """`previous_keys` as the connection's extra holds it: a key, or a list of keys and
    `{"key": ..., "until": "YYYY-MM-DD[THH:MM[:SS]]"}` (UTC unless it says otherwise)."""
    if previous in (None, ""):
        return []
    entries = [previous] if isinstance(previous, str | dict) else previous
    if not isinstance(entries, list):
        raise ConfigurationError("extra previous_keys must be a list of keys")
    keys = []
    for position, entry in enumerate(entries):
        if isinstance(entry, str):
            keys.append(RetiredKey(entry))
            continue
        if (not isinstance(entry, dict) or not isinstance(entry.get("key"), str)
                or set(entry) - {"key", "until"}):
            raise ConfigurationError(f"previous_keys #{position} must be a key or "
                                     '{"key": ..., "until": "YYYY-MM-DD"}')
        until = entry.get("until")
        try:
            when = datetime.fromisoformat(until) if until is not None else None
        except (TypeError, ValueError):
            raise ConfigurationError(f"previous_keys #{position}: until must be a date or "
                                     f"time like 2027-06-30, not {until!r}") from None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        keys.append(RetiredKey(entry["key"], when))
    return keys
