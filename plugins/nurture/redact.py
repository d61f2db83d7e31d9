"""Keep email addresses and phone numbers out of text that is stored or logged (provider
error messages quote the recipient, e.g. Twilio's 21211)."""

from __future__ import annotations

import re

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"\+?\d[\d ().-]{5,}\d")


def redact(text: str) -> str:
    return PHONE.sub("<phone>", EMAIL.sub("<email>", text))
