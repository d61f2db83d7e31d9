"""Checks on the contact data a message depends on, one reason string per failure.

A bad value costs that contact that message and nothing else: the planner records the
reason in the ledger and moves on.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Unusable(ValueError):
    """A value a message cannot be sent with; `reason` goes into the ledger."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def email_address(value: str | None) -> str:
    from email_validator import EmailNotValidError, validate_email

    if not value:
        raise Unusable("missing_email")
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
