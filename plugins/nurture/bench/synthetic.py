"""A synthetic warehouse of any size, deterministic for a seed, streamed into the raw
tables with COPY: contacts with consents, sign-ups and lead profiles, and their activity
(app events, page visits, form fills) and the emails Nurture sent them (the ledger) with
those emails' SendGrid events, spread over a year.

Rows are generated in chunks and handed to COPY as they are made, so memory stays flat
whatever the size. Shapes are those of the demo data (`nurture.seed.RAW_TABLES`).
"""

from __future__ import annotations

import io
import itertools
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nurture import catalog, seed
from nurture.seed_leads import SITE
from nurture.seed_surveys import ACCOUNT_MANAGERS, USERS
from nurture.webhooks.storage import PROVIDER_EVENT_TABLES

CHUNK = 20_000  # contacts per generated chunk
SPAN = timedelta(days=365)  # activity falls within the year before `now` (load: a day less)
# An event is loaded this long after it happens, as a loader that runs all year would (not
# the whole year at `now`: incremental models read what was loaded since their last build).
LOAD_LAG = timedelta(minutes=5)
WEBINARS = 20
# How the events divide between tables (shares of `events`).
NURTURE_STATE_TABLES = ("nurture.message_ledger", "nurture.guard_results",
                        "nurture.run_summaries", "nurture.upcoming_messages")
EVENT_SHARES = {"events": 0.45, "page_visits": 0.25, "form_fills": 0.02,
                "sendgrid_events": 0.28}
ZONES = ("Europe/Helsinki", "Europe/Stockholm", "Europe/Berlin", "America/New_York",
         "America/Los_Angeles", "Asia/Tokyo")
LOCALES = ("en", "fi", "sv")
APP_EVENTS = ("logged_in", "logged_in", "report_viewed", "data_source_added", "activated")
PAGES = ("/pricing", "/docs/getting-started", "/case-studies", "/blog/lifecycle", "/security")
FORMS = ("newsletter", "ebook_download", "demo_request", "contact_sales")
# What becomes of a sent email: its chance of each SendGrid event.
EMAIL_BOUNCE, EMAIL_OPEN, EMAIL_CLICK_IF_OPENED, EMAIL_UNSUBSCRIBE = 0.01, 0.35, 0.2, 0.003
EVENTS_PER_EMAIL = 1 + (1 - EMAIL_BOUNCE) * (EMAIL_OPEN * (1 + EMAIL_CLICK_IF_OPENED)
                                             + EMAIL_UNSUBSCRIBE)
LEDGER_COLUMNS = ("ledger_id", "program", "step", "contact_id", "enrollment_id", "channel",
                  "state", "recipient", "provider_message_id", "due_at", "planned_at",
                  "sent_at", "updated_at")


@dataclass(frozen=True)
class Size:
    contacts: int
    events: int
    seed: int = 7

    def per_contact(self, table: str) -> float:
        return self.events * EVENT_SHARES[table] / self.contacts


def load(conn, size: Size, *, now: datetime, progress: Callable[[str, int], None]) -> dict:
    """Replace the raw tables with a synthetic warehouse of `size`; rows per table.
    `progress(table, rows)` is called as rows are loaded."""
    empty = seed.Dataset(loaded_at=now, tables={name: [] for name in seed.RAW_TABLES})
    seed.load(conn, empty)  # tables made and emptied, as the demo loader does
    counts = {}
    with conn.cursor() as cur:
        # and what earlier runs left: provider events, decisions, guard history
        cur.execute("truncate " + ", ".join((*PROVIDER_EVENT_TABLES, *NURTURE_STATE_TABLES)))
        for table, rows in _tables(size, now).items():
            stream = _LineStream(rows(), lambda n, table=table: progress(table, n))
            cur.copy_expert(f"copy {_relation(table)} from stdin", stream)
            counts[table] = stream.rows
        # Statistics now, as a loader should: before autovacuum gets to fresh tables, the
        # planner would take them for empty and pick nested loops over millions of rows.
        cur.execute("analyze")
    return counts


def expected_rows(size: Size, table: str) -> int | None:
    """About how many rows `load` makes for `table` (for progress bars)."""
    if table in EVENT_SHARES:
        return round(size.events * EVENT_SHARES[table])
    if table == "message_ledger":
        return round(size.events * EVENT_SHARES["sendgrid_events"] / EVENTS_PER_EMAIL)
    return {"crm_contacts": size.contacts, "consents": round(size.contacts * 2.1),
            "signups": round(size.contacts * 0.6),
            "lead_profiles": round(size.contacts * 0.2),
            "support_tickets": round(size.contacts * 0.05), "webinars": WEBINARS,
            "webinar_registrations": round(size.contacts * 0.03)}.get(table)


def append_day(conn, size: Size, *, now: datetime) -> int:
    """The last day before `now` of activity, of sent emails and of their SendGrid events,
    after the year `load` ended a day earlier (for an incremental build); returns the rows
    added. A day already past, as a daily build finds it: a day to come would be events
    lead scoring does not count yet. Its rows are loaded now, after the build that read the
    year, as a daily load would: the incremental models read what was loaded since."""
    added = 0
    with conn.cursor() as cur:
        for table, rows in _last_day(size, now, loaded_at=now_utc()).items():
            stream = _LineStream(rows(), lambda n: None)
            cur.copy_expert(f"copy {_relation(table)} from stdin", stream)
            added += stream.rows
            cur.execute(f"analyze {_relation(table).split()[0]}")
    return added


def _last_day(size: Size, now: datetime, *, loaded_at: datetime | None = None
              ) -> dict[str, Callable[[], Iterator[tuple]]]:
    day = Size(size.contacts, round(size.events * timedelta(days=1) / SPAN), size.seed + 1)
    return _activity_and_emails(day, now, span=timedelta(days=1), prefix="D",
                                loaded_at=loaded_at)


def _relation(table: str) -> str:
    """Where COPY puts `table`'s rows: the raw table, or the ledger's columns it fills."""
    if table == "message_ledger":
        return f"nurture.message_ledger ({', '.join(LEDGER_COLUMNS)})"
    return f"raw.{table}"


def _tables(size: Size, now: datetime) -> dict[str, Callable[[], Iterator[tuple]]]:
    # The CRM and app tables as their last sync stamped them, two hours before `now`:
    # beyond the incremental lookback (an hour) of the bench's first build, so the build
    # after the day finds them unchanged, and fresh to the guards (24 hours).
    loaded = now - timedelta(hours=2)
    return {
        "crm_users": lambda: iter([(*user, loaded) for user in USERS]),
        "crm_contacts": lambda: _contacts(size, loaded),
        "consents": lambda: _consents(size, loaded),
        "signups": lambda: _signups(size, loaded),
        "lead_profiles": lambda: _lead_profiles(size, loaded),
        "support_tickets": lambda: _support_tickets(size, loaded),
        "webinars": lambda: _webinars(loaded),
        "webinar_registrations": lambda: _registrations(size, loaded),
        # the year up to a day ago: append_day adds the last day
        **_activity_and_emails(size, now - timedelta(days=1), span=SPAN, prefix="E"),
    }


def _activity_and_emails(size: Size, end: datetime, *, span: timedelta, prefix: str,
                         loaded_at: datetime | None = None
                         ) -> dict[str, Callable[[], Iterator[tuple]]]:
    """Rows in (end - span, end] of the activity tables, and of the ledger and SendGrid
    events (one generation read twice: each table takes its part). Each row is loaded
    minutes after it happened, or all at `loaded_at` (a load after the bench's build)."""
    def emails(part: int) -> Iterator[tuple]:
        for sent in _emails(size, end, span=span, prefix=prefix, loaded_at=loaded_at):
            yield from [sent[0]] if part == 0 else sent[1]
    return {
        **{table: (lambda table=table: _event_rows(table, size, end, span=span, prefix=prefix,
                                                   loaded_at=loaded_at))
           for table in EVENT_SHARES if table != "sendgrid_events"},
        "message_ledger": lambda: emails(0),
        "sendgrid_events": lambda: emails(1),
    }


def _contact_numbers(size: Size) -> Iterator[tuple[random.Random, range]]:
    """Chunks of contact numbers, each with its own seeded generator (deterministic and
    independent of chunk order)."""
    for start in range(0, size.contacts, CHUNK):
        yield random.Random(size.seed * 1_000_003 + start), range(start,
                                                                 min(start + CHUNK, size.contacts))


def _created_at(rng: random.Random, now: datetime) -> datetime:
    return now - SPAN * rng.random() - timedelta(days=1)


def _contacts(size: Size, now: datetime) -> Iterator[tuple]:
    for rng, numbers in _contact_numbers(size):
        for n in numbers:
            created = _created_at(rng, now)
            stage = rng.choices(("subscriber", "customer", "lead"), (70, 10, 20))[0]
            first = rng.choice(seed.FIRST_NAMES)
            yield (f"B{n:08d}", f"{first.lower()}.{n}@example.com", f"+35840{n:08d}",
                   first, rng.choice(seed.LAST_NAMES), rng.choice(ZONES),
                   rng.choice(LOCALES), stage, created, created, created, now,
                   rng.choice(ACCOUNT_MANAGERS) if stage == "lead" else None)


def _consents(size: Size, now: datetime) -> Iterator[tuple]:
    for rng, numbers in _contact_numbers(size):
        for n in numbers:
            created = _created_at(rng, now)
            for channel in ("email", "sms"):
                yield (f"B{n:08d}-{channel}-1", f"B{n:08d}", channel, "opted_in",
                       "signup_form", created, now)
                if rng.random() < 0.05:
                    yield (f"B{n:08d}-{channel}-2", f"B{n:08d}", channel, "opted_out", "crm",
                           created + timedelta(days=rng.randint(1, 60)), now)


def _signups(size: Size, now: datetime) -> Iterator[tuple]:
    for rng, numbers in _contact_numbers(size):
        for n in numbers:
            if rng.random() < 0.6:
                yield (f"BS{n:08d}", f"B{n:08d}", rng.choice(("free", "team")),
                       _created_at(rng, now), now)


def _lead_profiles(size: Size, now: datetime) -> Iterator[tuple]:
    for rng, numbers in _contact_numbers(size):
        for n in numbers:
            if rng.random() < 0.2:
                yield (f"B{n:08d}", rng.choice(("Analyst", "Head of Data", "CTO", "Engineer")),
                       rng.choice(("individual", "manager", "director", "executive")),
                       f"Company {n % 50_000}", rng.choice((8, 40, 250, 1200, 8000)),
                       rng.choice(("software", "retail", "finance", "education")),
                       rng.choice(("yes", "no", None)), rng.choice(("yes", "no", None)),
                       rng.choice(("yes", "no", None)),
                       rng.choice(("this_quarter", "this_year", None)),
                       _created_at(rng, now), now)


def _support_tickets(size: Size, now: datetime) -> Iterator[tuple]:
    for rng, numbers in _contact_numbers(size):
        for n in numbers:
            if rng.random() < 0.05:
                opened = _created_at(rng, now)
                closed = opened + timedelta(hours=rng.randint(1, 96))
                yield (f"BT{n:08d}", f"B{n:08d}", "Export is slow", "closed", opened,
                       min(closed, now), now)


def _webinar_start(number: int, now: datetime) -> datetime:
    """Webinars every three days, half of them past."""
    return (now + timedelta(days=3 * (number - WEBINARS // 2))).replace(minute=0, second=0)


def _webinars(now: datetime) -> Iterator[tuple]:
    for number in range(WEBINARS):
        yield (f"BW{number:03d}", f"Webinar {number}", _webinar_start(number, now),
               "Europe/Helsinki", 60, 2_000, "subscriber",
               f"https://live.nurture.example/bw{number:03d}",
               f"https://nurture.example/recordings/bw{number:03d}", now)


def _registrations(size: Size, now: datetime) -> Iterator[tuple]:
    for rng, numbers in _contact_numbers(size):
        for n in numbers:
            if rng.random() < 0.03:
                number = rng.randrange(WEBINARS)
                registered = _webinar_start(number, now) - timedelta(days=rng.randint(1, 10))
                yield (f"BR{n:08d}", f"BW{number:03d}", f"B{n:08d}", min(registered, now),
                       None, now)


def _event_rows(table: str, size: Size, end: datetime, *, span: timedelta,
                prefix: str, loaded_at: datetime | None) -> Iterator[tuple]:
    """`size.per_contact(table)` rows per contact on average, at times in (end - span, end]."""
    mean = size.per_contact(table)
    table_seed = size.seed + 1 + list(EVENT_SHARES).index(table)
    for rng, numbers in _contact_numbers(Size(size.contacts, size.events, table_seed)):
        for n in numbers:
            count = int(mean) + (rng.random() < mean - int(mean))
            for i in range(count):
                at = end - span * rng.random()
                yield _event(table, rng, f"{prefix}{n:08d}-{i}", f"B{n:08d}", at,
                             _load_time(at, end, loaded_at))


def _load_time(at: datetime, end: datetime, loaded_at: datetime | None) -> datetime:
    """When a row that happened `at` was loaded: minutes later (by `end`), or `loaded_at`."""
    return loaded_at or min(at + LOAD_LAG, end)


def _event(table: str, rng: random.Random, event_id: str, contact_id: str, at: datetime,
           loaded: datetime) -> tuple:
    if table == "events":
        return (event_id, contact_id, rng.choice(APP_EVENTS), at, loaded)
    if table == "page_visits":
        return (event_id, contact_id, SITE + rng.choice(PAGES), at, loaded)
    return (event_id, contact_id, rng.choice(FORMS), at, loaded)


def _emails(size: Size, end: datetime, *, span: timedelta, prefix: str,
            loaded_at: datetime | None) -> Iterator[tuple[tuple, list[tuple]]]:
    """Emails sent in (end - span, end], `size.per_contact("sendgrid_events")` of their
    events per contact on average: (ledger row, its SendGrid event rows) each. The events
    carry the ledger id, as Nurture's sends do; they happen (and are loaded) by `end`."""
    mean = size.per_contact("sendgrid_events") / EVENTS_PER_EMAIL
    steps = _email_steps()
    table_seed = size.seed + 1 + list(EVENT_SHARES).index("sendgrid_events")
    for rng, numbers in _contact_numbers(Size(size.contacts, size.events, table_seed)):
        for n in numbers:
            contact_id, email = f"B{n:08d}", f"b{n:08d}@example.com"
            for i in range(int(mean) + (rng.random() < mean - int(mean))):
                message = f"{prefix}{n:08d}-{i}"
                sent = end - span * rng.random()
                ledger_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                program, step = rng.choice(steps)
                ledger_row = (ledger_id, program, step, contact_id, f"bench:{message}",
                              "email", "sent", email, f"msg-{message}",
                              sent - timedelta(minutes=10), sent - timedelta(minutes=1), sent,
                              loaded_at or sent + timedelta(seconds=1))
                yield ledger_row, _email_events(rng, ledger_row, end, loaded_at)


def _email_events(rng: random.Random, sent_email: tuple, end: datetime,
                  loaded_at: datetime | None) -> list[tuple]:
    """SendGrid's events for one sent email (a ledger row): delivered or a bounce, maybe
    an open and a click, now and then an unsubscribe; none later than `end`."""
    ledger_id, program, step, _, _, _, _, email, message_id = sent_email[:9]
    sent = sent_email[11]

    def event(name: str, at: datetime, **extra) -> tuple:
        at = min(at, end)
        event_id = f"{message_id.removeprefix('msg-')}-{name}"
        payload = {"email": email, "event": name, "timestamp": int(at.timestamp()),
                   "sg_event_id": event_id, "sg_message_id": message_id,
                   "ledger_id": ledger_id, "program": program, "step": step, **extra}
        return (event_id, name, _load_time(at, end, loaded_at), json.dumps(payload))

    if rng.random() < EMAIL_BOUNCE:
        return [event("bounce", sent + timedelta(seconds=5), type="bounce")]
    events = [event("delivered", sent + timedelta(seconds=5))]
    if rng.random() < EMAIL_OPEN:
        opened = sent + timedelta(days=3) * rng.random()
        events.append(event("open", opened))
        if rng.random() < EMAIL_CLICK_IF_OPENED:
            events.append(event("click", opened + timedelta(minutes=1)))
    if rng.random() < EMAIL_UNSUBSCRIBE:
        events.append(event("unsubscribe", sent + timedelta(hours=2)))
    return events


def _email_steps() -> list[tuple[str, str]]:
    """(program, step) of every email a program in dags/ sends to its contacts."""
    return sorted((program.name, step.name) for program in catalog.programs().values()
                  for step in program.steps if step.channel == "email" and not step.is_internal)


class _LineStream(io.TextIOBase):
    """Rows as COPY text, made as COPY asks for them: each read returns the next few
    thousand lines (psycopg2 sends whatever length a read returns)."""

    def __init__(self, rows: Iterator[tuple], progress: Callable[[int], None]) -> None:
        self._rows = rows
        self._progress = progress
        self.rows = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> str:
        lines = [seed.copy_line(row) for row in itertools.islice(self._rows, 2_000)]
        self.rows += len(lines)
        if lines:
            self._progress(len(lines))
        return "".join(lines)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
