"""SMS character sets and segment counts at their boundaries."""

from __future__ import annotations

import pytest

from nurture.sms_encoding import measure


@pytest.mark.parametrize(("text", "units", "segments"), [
    ("", 0, 0),
    ("a" * 160, 160, 1),
    ("a" * 161, 161, 2),
    ("a" * 306, 306, 2),  # 2 × 153
    ("a" * 307, 307, 3),
    ("€" * 80, 160, 1),  # extension characters count two septets
    ("€" * 80 + "a", 161, 2),
    ("[]{}^~|\\\f", 18, 1),
])
def test_gsm7_counts_septets(text, units, segments):
    size = measure(text)
    assert (size.encoding, size.units, size.segments) == ("GSM-7", units, segments)
    assert size.non_gsm == ()


def test_finnish_and_swedish_letters_stay_gsm7():
    text = "Hyvää päivää, Åsa! Hej Örjan, välkommen. ÄÖÅäöå é ü ñ £ § ¿"
    size = measure(text)
    assert (size.encoding, size.units, size.segments) == ("GSM-7", len(text), 1)


@pytest.mark.parametrize(("text", "units", "segments"), [
    ("ą" * 70, 70, 1),
    ("ą" * 71, 71, 2),
    ("ą" * 134, 134, 2),  # 2 × 67
    ("ą" * 135, 135, 3),
    ("a" * 68 + "😀", 70, 1),  # an emoji is two UTF-16 code units
    ("a" * 69 + "😀", 71, 2),
])
def test_ucs2_counts_utf16_code_units(text, units, segments):
    size = measure(text)
    assert (size.encoding, size.units, size.segments) == ("UCS-2", units, segments)


@pytest.mark.parametrize(("text", "culprits"), [
    ("Hi Anna 😀", ("😀",)),
    ("”Lifecycle programs 101” starts soon", ("”",)),  # a typographic quote
    ("Hi Zoë, ça va? Zoë", ("ë", "ç")),  # only capital Ç is in GSM-7
])
def test_one_character_outside_gsm7_switches_the_whole_text_to_ucs2(text, culprits):
    size = measure(text)
    assert size.encoding == "UCS-2"
    assert size.non_gsm == culprits
    assert size.units == len(text.encode("utf-16-le")) // 2


def test_an_escape_pair_is_not_split_across_segments():
    # 306 septets would fill two segments exactly, but the € cannot straddle them
    size = measure("a" * 152 + "€" + "a" * 152)
    assert (size.units, size.segments) == (306, 3)


def test_a_surrogate_pair_is_not_split_across_segments():
    size = measure("ą" * 66 + "😀" + "ą" * 66)
    assert (size.units, size.segments) == (134, 3)
