"""Opaque, signed tokens for links that act on a contact without a login.

Unsubscribe and survey links carry a token in their path. Anyone holding a link can use it,
so a token must not be forgeable, alterable or enumerable, and it must not reveal whose it
is: a signed but readable payload would put contact ids into mail logs, proxies and browser
histories. Fernet (AES-128-CBC + HMAC-SHA256 with a timestamp) encrypts and authenticates the
claims; MultiFernet gives key rotation: new tokens use the current key, older keys keep
verifying during a grace period, and removing a key retires every token it issued.

Keys come from the Airflow connection `nurture_signing`: the password is the current key,
the extra `previous_keys` a list of older keys still accepted. Keep a retired key in that list
for as long as links it signed must work (unsubscribe links live in old mail for years).
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

    def __init__(self, keys: Sequence[str | bytes], *,
                 clock: Callable[[], float] = time.time) -> None:
        if isinstance(keys, str | bytes) or not keys:
            raise ConfigurationError("token signing needs a list of at least one key")
        ciphers = []
        for position, key in enumerate(keys):
            try:
                ciphers.append(fernet.Fernet(key))
            except (ValueError, TypeError, binascii.Error):
                # Never echo the key itself: it is a secret.
                raise ConfigurationError(
                    f"signing key #{position} is not a Fernet key (32 url-safe base64 bytes)"
                ) from None
        self._fernet = fernet.MultiFernet(ciphers)
        self._clock = clock

    @classmethod
    def from_connection(cls, conn_id: str = CONN_ID, *,
                        get_connection: Callable[[str], Any] | None = None) -> TokenSigner:
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
        previous = conn.extra_dejson.get("previous_keys") or []
        if isinstance(previous, str):
            previous = [previous]
        if not isinstance(previous, list) or not all(isinstance(k, str) for k in previous):
            raise ConfigurationError(f"connection {conn_id}: extra previous_keys must be a "
                                     "list of keys")
        try:
            return cls([conn.password, *previous])
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
        token = self._fernet.encrypt_at_time(payload, int(self._clock()))
        return token.decode("ascii").rstrip("=")

    def verify(self, token: str, *, purpose: str,
               max_age: timedelta | None = None) -> TokenClaims:
        """The claims of a genuine, unexpired token for `purpose`, or InvalidToken.

        `max_age` None means the purpose's default from MAX_AGE (no expiry if it has none).
        """
        raw = self._canonical(token)
        try:
            payload = self._fernet.decrypt(raw)
            issued = self._fernet.extract_timestamp(raw)
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
