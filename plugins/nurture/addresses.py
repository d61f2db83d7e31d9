"""Checks on the contact data a message depends on, one reason string per failure.

A bad value costs that contact that message and nothing else: the planner records the
reason in the ledger and moves on.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The shape nearly every address has, which email_validator accepts as it is but for the
# domain's case: a plan checks every due contact's address, and this is a regular
# expression's cost rather than email_validator's 0.2 ms. Anything else (IDNA, quoting,
# special-use domains, role names it lowercases, long parts...) goes to email_validator;
# tests/test_addresses.py holds the two to the same answers.
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})")


class Unusable(ValueError):
    """A value a message cannot be sent with; `reason` goes into the ledger."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def email_address(value: str | None) -> str:
    """The address as email_validator normalises it."""
    from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

    if not value:
        raise Unusable("missing_email")
    plain = _PLAIN_EMAIL.fullmatch(value)
    if plain and len(value) <= 254 and len(plain["local"]) <= 64 and "--" not in value \
            and plain["domain"].rsplit(".", 1)[1].lower() not in SPECIAL_USE_DOMAIN_NAMES \
            and plain["local"].lower() not in CASE_INSENSITIVE_MAILBOX_NAMES:
        return f"{plain['local']}@{plain['domain'].lower()}"
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as err:
        raise Unusable("invalid_email") from err


def phone_number(value: str | None) -> str:
    """The number in E.164, as Twilio wants it."""
    import phonenumbers

    if not value:
        raise Unusable("missing_phone")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as err:
        raise Unusable("invalid_phone") from err
    if not phonenumbers.is_valid_number(number):
        raise Unusable("invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=1024)
def time_zone(value: str | None) -> ZoneInfo:
    if not value:
        raise Unusable("unknown_time_zone")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise Unusable("unknown_time_zone") from err


@lru_cache(maxsize=1024)
def locale(value: str | None, default: str) -> str:
    """A known locale as `ll` or `ll-CC`; a missing one falls back to the program's default."""
    from babel import Locale, UnknownLocaleError

    if not value:
        return default
    try:
        parsed = Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as err:
        raise Unusable("unknown_locale") from err
    return f"{parsed.language}-{parsed.territory}" if parsed.territory else parsed.language
