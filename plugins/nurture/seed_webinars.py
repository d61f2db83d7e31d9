"""Webinars in the demo dataset: one at every stage of the webinar program, timed relative
to the moment of loading, so each step has someone due whenever the demo runs.

    W001  in 14 days, for leads               invitations due
    W002  in 3 days, for customers            invitations long expired; last call for the
                                              invited (none yet on a fresh load)
    W003  tomorrow, 3 seats, 5 registered     confirmations, a waitlist, the day-before
          (one cancelled)                     reminder
    W004  in 50 minutes, 6 registered         the SMS reminder (in daytime zones only)
    W005  ended 3 hours ago, 8 registered     thank-you to 5 attendees, "sorry we missed
                                              you" to 3 no-shows
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

RAW_TABLES = {
    "webinars": "webinar_id text, title text, starts_at timestamptz, time_zone text,"
    " duration_minutes integer, capacity integer, audience_stage text, join_url text,"
    " recording_url text, _loaded_at timestamptz",
    "webinar_registrations": "registration_id text, webinar_id text, contact_id text,"
    " registered_at timestamptz, cancelled_at timestamptz, _loaded_at timestamptz",
    "webinar_attendance": "webinar_id text, contact_id text, joined_at timestamptz,"
    " minutes_attended integer, _loaded_at timestamptz",
}


@dataclass(frozen=True)
class DemoWebinar:
    webinar_id: str
    title: str
    starts_in: timedelta  # from loading; negative: in the past
    capacity: int
    audience_stage: str
    registrants: int = 0
    cancelled: tuple[int, ...] = ()  # which registrants (by order) cancelled
    attended: int = 0  # the first n registrants attended


WEBINARS = (
    DemoWebinar("W001", "Lifecycle programs 101", 14 * DAY - 2 * HOUR, 100, "lead"),
    DemoWebinar("W002", "Advanced segmentation", 3 * DAY - HOUR, 50, "customer"),
    DemoWebinar("W003", "Office hours", DAY - HOUR / 2, 3, "customer", registrants=5,
                cancelled=(1,)),
    DemoWebinar("W004", "Getting started live", HOUR - 10 * timedelta(minutes=1), 20,
                "customer", registrants=6),
    DemoWebinar("W005", "Product update", -4 * HOUR, 50, "customer", registrants=8,
                attended=5),
)
DURATION = timedelta(minutes=60)


def add_webinars(data, registrant_pool: list[str]) -> int:
    """Append the demo webinars to `data.tables`; registrants are drawn in order from
    `registrant_pool` (contacts with valid addresses, consent and a daytime zone), so each
    webinar has its own people. Returns how many of the pool it used."""
    now = data.loaded_at
    pool = iter(registrant_pool)
    used = 0
    for webinar in WEBINARS:
        starts_at = now + webinar.starts_in
        data.tables["webinars"].append((
            webinar.webinar_id, webinar.title, starts_at, "Europe/Helsinki",
            int(DURATION.total_seconds() // 60), webinar.capacity, webinar.audience_stage,
            f"https://live.nurture.example/{webinar.webinar_id.lower()}",
            f"https://nurture.example/recordings/{webinar.webinar_id.lower()}", now,
        ))
        for n in range(webinar.registrants):
            contact_id = next(pool)
            used += 1
            registered_at = min(now - HOUR, starts_at - 2 * DAY) + n * timedelta(minutes=5)
            cancelled_at = now - HOUR / 2 if n in webinar.cancelled else None
            data.tables["webinar_registrations"].append((
                f"R-{webinar.webinar_id}-{n + 1}", webinar.webinar_id, contact_id,
                registered_at, cancelled_at, now,
            ))
            if n < webinar.attended:
                data.tables["webinar_attendance"].append((
                    webinar.webinar_id, contact_id, starts_at + 2 * timedelta(minutes=1),
                    45, now,
                ))
    return used
