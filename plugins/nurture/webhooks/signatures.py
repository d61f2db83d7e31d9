"""Provider webhook signatures, checked before anything a provider sends is trusted.

Implemented here rather than borrowed from the SDKs so the receiver controls the details
that matter to it: raw bytes in (SendGrid signs the body exactly as sent, so it must never
be re-serialised first), a constant-time comparison, and `False` rather than an exception
for any malformed signature, so one bad request cannot turn into a 500. The tests use the
SDKs' own code as the peer, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

FormParams = Mapping[str, str] | Mapping[str, Sequence[str]]


@lru_cache(maxsize=8)
def load_sendgrid_key(public_key: str) -> ec.EllipticCurvePublicKey:
    """The P-256 key from the verification key as SendGrid displays it (base64 of the DER).

    PEM armour and line breaks are tolerated because operators paste keys. A key that is
    not a P-256 public key raises ValueError: that is a configuration error, to be reported
    at start-up, not a signature that merely fails to match.
    """
    lines = [line.strip() for line in public_key.strip().splitlines()]
    body = "".join(line for line in lines if line and not line.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
        key = load_der_public_key(der)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not a SendGrid webhook verification key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the SendGrid webhook verification key must be an ECDSA P-256 key")
    return key


def verify_sendgrid(public_key: str, payload: bytes, signature: str, timestamp: str) -> bool:
    """True if `signature` (base64 of a DER ECDSA signature) signs timestamp + raw body.

    The timestamp's freshness is the caller's business (it knows the clock and tolerance);
    this only proves the pair was signed by the holder of the key.
    """
    key = load_sendgrid_key(public_key)
    try:
        decoded = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(decoded, timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def twilio_signature(auth_token: str, url: str, params: FormParams) -> str:
    """Twilio's HMAC-SHA1 signature: URL, then each key and value sorted, base64.

    Repeated keys and duplicate values are treated as Twilio's own validator treats them
    (sorted, duplicates once), so a request Twilio signed is accepted here too.
    """
    parts = [url]
    for name in sorted(set(params)):
        values = params[name]
        for value in sorted({values} if isinstance(values, str) else set(values)):
            parts.append(name + value)
    mac = hmac.new(auth_token.encode(), "".join(parts).encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def verify_twilio(auth_token: str, url: str, params: FormParams, signature: str) -> bool:
    """True if `signature` is Twilio's signature of this URL and form, compared in constant time.

    Twilio has signed some URLs with the default port spelled out and some without, so both
    spellings are tried, as its own validator does.
    """
    given = signature.encode()
    return any(
        hmac.compare_digest(twilio_signature(auth_token, candidate, params).encode(), given)
        for candidate in _port_variants(url)
    )


def _port_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with the scheme's default port."""
    parts = urlsplit(url)
    if parts.port is None:
        default = 443 if parts.scheme == "https" else 80
        netloc = parts.netloc + f":{default}"
    else:
        netloc = parts.netloc.rsplit(":", 1)[0]
    return [url, parts._replace(netloc=netloc).geturl()]
