"""Contact data checks: each unusable value becomes one reason for the ledger."""

from __future__ import annotations

import random
from zoneinfo import ZoneInfo

import pytest

from nurture import addresses
from nurture.addresses import Unusable


def reason_for(check, *args) -> str:
    with pytest.raises(Unusable) as caught:
        check(*args)
    return caught.value.reason


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("anna@example.com", "anna@example.com"),
        # the domain is case-insensitive and lower-cased; the local part is kept as given
        ("Anna@Example.COM", "Anna@example.com"),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
    ],
)
def test_email_is_normalised(raw, normalised):
    assert addresses.email_address(raw) == normalised


@pytest.mark.parametrize("raw", [None, ""])
def test_missing_email(raw):
    assert reason_for(addresses.email_address, raw) == "missing_email"


@pytest.mark.parametrize(
    "raw",
    ["anna", "anna@", "@example.com", "anna@@example.com", "anna@example", "an na@example.com"],
)
def test_invalid_email(raw):
    assert reason_for(addresses.email_address, raw) == "invalid_email"


def test_unusable_is_a_value_error_carrying_its_reason():
    error = Unusable("invalid_email")
    assert isinstance(error, ValueError)
    assert str(error) == error.reason == "invalid_email"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+358 40 123 4567", "+358401234567"),
        ("+358401234567", "+358401234567"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_phone_is_formatted_as_e164(raw, e164):
    assert addresses.phone_number(raw) == e164


@pytest.mark.parametrize("raw", [None, ""])
def test_missing_phone(raw):
    assert reason_for(addresses.phone_number, raw) == "missing_phone"


@pytest.mark.parametrize(
    "raw",
    [
        "call me",
        "040 123 4567",  # no country code: the region cannot be guessed
        "+358 1",  # too short to be a number
        "+1 555 0100",  # parses but is not a valid number
    ],
)
def test_invalid_phone(raw):
    assert reason_for(addresses.phone_number, raw) == "invalid_phone"


@pytest.mark.parametrize("name", ["Europe/Helsinki", "America/New_York", "UTC"])
def test_known_time_zone(name):
    assert addresses.time_zone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name", [None, "", "Mars/Olympus_Mons", "europe/helsinki", "../../etc/passwd", "/etc/localtime"]
)
def test_unknown_time_zone(name):
    assert reason_for(addresses.time_zone, name) == "unknown_time_zone"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("fi", "fi"),
        ("fi-FI", "fi-FI"),
        ("fi_FI", "fi-FI"),
        ("fi-fi", "fi-FI"),
        ("sv-FI", "sv-FI"),
    ],
)
def test_locale_is_normalised_or_defaulted(raw, expected):
    assert addresses.locale(raw, "en") == expected


def test_missing_locale_falls_back_to_the_given_default():
    assert addresses.locale(None, "fi") == "fi"


@pytest.mark.parametrize("raw", ["xx-QQ", "zz", "en-XX", "not a locale"])
def test_unknown_locale(raw):
    assert reason_for(addresses.locale, raw, "en") == "unknown_locale"


def corpus(count: int, seed: int = 3) -> list[str]:
    """Addresses built from the pieces that make email_validator answer differently:
    dots, hyphens, `xn--` labels, case, role names, special-use and numeric TLDs, long
    labels and parts, stray characters."""
    rng = random.Random(seed)
    locals_ = ["anna", "Anna.B", "a..b", ".a", "a.", "a+b", "a_b-c", "postmaster", "Info",
               "x" * 64, "x" * 65, "a b", "a\"b", "ä", "a--b", "-a", "a/b", "1"]
    labels = ["example", "Example", "sub", "a", "a-b", "-ab", "ab-", "xn--bcher-kva", "a--b",
              "x" * 63, "x" * 64, "1", "ä", ""]
    tlds = ["com", "COM", "fi", "io", "test", "local", "arpa", "Onion", "c", "123", "co1",
            "x" * 63, ""]
    found = []
    for _ in range(count):
        domain = ".".join(rng.choices(labels, k=rng.randint(0, 3)) + [rng.choice(tlds)])
        found.append(f"{rng.choice(locals_)}@{domain}"[:rng.choice([300, 300, 254, 60])])
    return found


def test_the_plain_address_shortcut_answers_as_email_validator():
    from email_validator import EmailNotValidError, validate_email

    checked = accepted = 0
    for raw in corpus(20_000):
        try:
            expected = validate_email(raw, check_deliverability=False).normalized
        except EmailNotValidError:
            expected = "invalid_email"
        try:
            got = addresses.email_address(raw)
        except Unusable as unusable:
            got = unusable.reason
        assert got == expected, raw
        checked += 1
        accepted += expected != "invalid_email"
    assert checked == 20_000 and 2_000 < accepted < 18_000  # both answers well represented
