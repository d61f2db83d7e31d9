"""Keep credentials, email addresses and phone numbers out of text that is stored or logged.

Provider error messages quote the recipient (e.g. Twilio's 21211): `redact` masks them
before they reach the ledger or an exception. The SDKs log too: SendGrid's HTTP client
(`python_http_client`) logs each request's headers — the API key in `Authorization` — and its
whole payload, recipients and text, at DEBUG; Twilio's logs each request's URL and headers
at INFO. An operator who turns on DEBUG to chase a problem must not leak every key and
address into the task logs, so importing this module — the provider hooks do, so every
process that can send has — raises those loggers above the levels that carry them.
"""

from __future__ import annotations

import logging
import re

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"\+?\d[\d ().-]{5,}\d")
# Logger -> the lowest level it may log at: the levels below carry secrets or messages.
SDK_LOGGERS = {"python_http_client": logging.INFO, "twilio.http_client": logging.WARNING}


def redact(text: str) -> str:
    return PHONE.sub("<phone>", EMAIL.sub("<email>", text))


def quiet_sdk_loggers() -> None:
    """Raise the SDKs' loggers to their floor (a level set higher is kept)."""
    for name, floor in SDK_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level < floor:
            logger.setLevel(floor)


quiet_sdk_loggers()
