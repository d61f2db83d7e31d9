"""How many SMS segments a text costs, and in which character set it goes out.

A text made only of the GSM 03.38 default alphabet goes as GSM-7: 160 septets in one
message, 153 per segment once concatenated (the rest is the concatenation header); the
extension table's characters (€ [ ] { } ^ ~ | \\ and form feed) take an escape septet each,
so they count 2. One character outside both tables sends the whole text as UCS-2: 70 UTF-16
code units in one message, 67 per segment, an emoji (a surrogate pair) counting 2.
Escape pairs and surrogate pairs are never split across segments, so a long text can need
one segment more than a plain division says. Providers' "smart encoding" (curly quotes
replaced by straight ones) is not assumed: this is what goes out without it.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

# (units in a single message, units per segment of a concatenated one)
LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class SmsSize:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    non_gsm: tuple[str, ...] = ()  # the characters that forced UCS-2, in order of appearance


def measure(text: str) -> SmsSize:
    non_gsm = tuple(dict.fromkeys(c for c in text if c not in GSM_BASIC
                                  and c not in GSM_EXTENSION))
    encoding = "UCS-2" if non_gsm else "GSM-7"
    costs = [_cost(c, encoding) for c in text]
    single, per_segment = LIMITS[encoding]
    units = sum(costs)
    return SmsSize(encoding, units, _segments(costs, single, per_segment), non_gsm)


def _cost(char: str, encoding: str) -> int:
    if encoding == "GSM-7":
        return 2 if char in GSM_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def _segments(costs: list[int], single: int, per_segment: int) -> int:
    if sum(costs) <= single:
        return 1 if costs else 0
    segments, used = 1, 0
    for cost in costs:  # a character that does not fit whole starts the next segment
        if used + cost > per_segment:
            segments, used = segments + 1, 0
        used += cost
    return segments
