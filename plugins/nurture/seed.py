"""The deterministic demo dataset `nurture seed` loads into the warehouse's `raw` schema.

Contacts come in scenarios, each saying what the onboarding program should do with them
(`expected`), so the demo shows every outcome and the end-to-end test has an oracle that
does not re-implement the planner. Times are offsets from the moment of loading, and time
zones are picked for the current hour, so every step has contacts due whenever it runs.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from nurture import ledger, seed_leads, seed_surveys, seed_webinars

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# One zone per UTC offset from -10 to +13, enough to find any local hour at any moment.
ZONES = (
    "Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver",
    "America/Chicago", "America/New_York", "America/Halifax", "America/Sao_Paulo",
    "Atlantic/South_Georgia", "Atlantic/Azores", "Europe/London", "Europe/Stockholm",
    "Europe/Helsinki", "Europe/Moscow", "Asia/Dubai", "Asia/Karachi", "Asia/Dhaka",
    "Asia/Bangkok", "Asia/Singapore", "Asia/Tokyo", "Australia/Brisbane", "Pacific/Noumea",
    "Pacific/Auckland", "Pacific/Tongatapu",
)
FIRST_NAMES = ("Aino", "Eero", "Linnea", "Oskar", "Maya", "Liam", "Sofia", "Noah", "Elsa", "Ari")
LAST_NAMES = ("Virtanen", "Korhonen", "Lindqvist", "Berg", "Smith", "Garcia", "Nieminen")


@dataclass(frozen=True)
class Scenario:
    """A group of contacts alike in everything the onboarding program looks at."""

    name: str
    count: int
    expected: dict[str, str]  # step -> outcome: sent, or the reason nothing was sent
    signed_up: timedelta | None = HOUR * 2  # how long ago; None: entered via the CRM
    became_customer: timedelta | None = None
    activated_after: timedelta | None = None  # after entry; None: not activated
    email_consent: bool = True
    sms_consent: bool = True
    email: str = "valid"  # valid | invalid | missing
    phone: str = "valid"  # valid | invalid | missing
    local_hour: str = "day"  # day | night | unknown_zone: where the contact's clock stands
    locale: str = "en"
    first_name: bool = True
    duplicated_in_crm: bool = False
    extra: dict[str, str] = field(default_factory=dict)


NOT_DUE = "not_due"
SCENARIOS = (
    Scenario("new_signup", 60, {"welcome": "sent", "setup_tips": NOT_DUE, "check_in": NOT_DUE}),
    Scenario("new_signup_finnish", 8, {"welcome": "sent", "setup_tips": NOT_DUE,
                                       "check_in": NOT_DUE}, locale="fi"),
    Scenario("new_signup_crm_duplicate", 3, {"welcome": "sent", "setup_tips": NOT_DUE,
                                             "check_in": NOT_DUE}, duplicated_in_crm=True),
    Scenario("new_customer_from_crm", 15, {"welcome": "sent", "setup_tips": NOT_DUE,
                                           "check_in": NOT_DUE},
             signed_up=None, became_customer=HOUR * 3),
    Scenario("day_2", 40, {"welcome": "expired", "setup_tips": "sent", "check_in": NOT_DUE},
             signed_up=DAY * 2 + HOUR * 3),
    Scenario("day_2_activated", 20, {"welcome": "goal_reached", "setup_tips": "goal_reached",
                                     "check_in": NOT_DUE},
             signed_up=DAY * 2 + HOUR * 3, activated_after=DAY),
    Scenario("day_7", 30, {"welcome": "expired", "setup_tips": "expired", "check_in": "sent"},
             signed_up=DAY * 7 + HOUR * 2),
    Scenario("day_7_at_night", 20, {"welcome": "expired", "setup_tips": "expired",
                                    "check_in": "outside_send_window"},
             signed_up=DAY * 7 + HOUR * 2, local_hour="night"),
    Scenario("day_7_activated", 20, {"welcome": "goal_reached", "setup_tips": "goal_reached",
                                     "check_in": "goal_reached"},
             signed_up=DAY * 7 + HOUR * 2, activated_after=DAY * 3),
    Scenario("day_7_no_sms_consent", 10, {"welcome": "expired", "setup_tips": "expired",
                                          "check_in": "no_consent"},
             signed_up=DAY * 7 + HOUR * 2, sms_consent=False),
    Scenario("no_email_consent", 15, {"welcome": "no_consent", "setup_tips": NOT_DUE,
                                      "check_in": NOT_DUE}, email_consent=False),
    Scenario("long_ago", 10, {"welcome": "expired", "setup_tips": "expired",
                              "check_in": "expired"}, signed_up=DAY * 30),
    # The deliberately bad rows: each costs its own message and nothing else.
    Scenario("bad_email", 5, {"welcome": "invalid_email", "setup_tips": NOT_DUE,
                              "check_in": NOT_DUE}, email="invalid"),
    Scenario("missing_email", 2, {"welcome": "missing_email", "setup_tips": NOT_DUE,
                                  "check_in": NOT_DUE}, email="missing"),
    Scenario("bad_phone", 4, {"welcome": "expired", "setup_tips": "expired",
                              "check_in": "invalid_phone"},
             signed_up=DAY * 7 + HOUR * 2, phone="invalid"),
    Scenario("unknown_time_zone", 3, {"welcome": "expired", "setup_tips": "expired",
                                      "check_in": "unknown_time_zone"},
             signed_up=DAY * 7 + HOUR * 2, local_hour="unknown_zone"),
    Scenario("unknown_locale", 3, {"welcome": "unknown_locale", "setup_tips": NOT_DUE,
                                   "check_in": NOT_DUE}, locale="xx-QQ"),
    Scenario("missing_first_name", 4, {"welcome": "template_error", "setup_tips": NOT_DUE,
                                       "check_in": NOT_DUE}, first_name=False),
)
LEADS_NOT_ENROLLED = 30


@dataclass
class Dataset:
    """Rows per raw table, plus which scenario each contact belongs to."""

    loaded_at: datetime
    tables: dict[str, list[tuple]] = field(default_factory=dict)
    scenario_of: dict[str, Scenario] = field(default_factory=dict)
    lead_persona_of: dict[str, seed_leads.LeadPersona] = field(default_factory=dict)


RAW_TABLES = {
    "crm_contacts": "contact_id text, email text, phone text, first_name text, last_name text,"
    " time_zone text, locale text, lifecycle_stage text, lifecycle_stage_changed_at timestamptz,"
    " created_at timestamptz, updated_at timestamptz, _loaded_at timestamptz, owner_id text",
    "consents": "consent_id text, contact_id text, channel text, status text, source text,"
    " recorded_at timestamptz, _loaded_at timestamptz",
    "signups": "signup_id text, contact_id text, plan text, signed_up_at timestamptz,"
    " _loaded_at timestamptz",
    "events": "event_id text, contact_id text, event_name text, occurred_at timestamptz,"
    " _loaded_at timestamptz",
    **seed_webinars.RAW_TABLES,
    **seed_surveys.RAW_TABLES,
    **seed_leads.RAW_TABLES,
}


def zone_at_local_hour(now: datetime, hours: range) -> Iterator[str]:
    """Zones whose local hour at `now` is in `hours`, cycling forever."""
    matching = [z for z in ZONES if now.astimezone(ZoneInfo(z)).hour in hours]
    while True:
        yield from matching


def build(now: datetime | None = None, *, seed: int = 7) -> Dataset:
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    data = Dataset(loaded_at=now, tables={name: [] for name in RAW_TABLES})
    zones = {"day": zone_at_local_hour(now, range(11, 18)),
             "night": zone_at_local_hour(now, range(1, 6))}
    number = 0
    for scenario in SCENARIOS:
        for _ in range(scenario.count):
            number += 1
            contact_id = f"C{number:05d}"
            data.scenario_of[contact_id] = scenario
            _add_contact(data, rng, scenario, contact_id, number, zones)
    leads = []
    for _ in range(LEADS_NOT_ENROLLED):
        number += 1
        lead = Scenario("lead", 1, {}, signed_up=None)
        leads.append(f"C{number:05d}")
        _add_contact(data, rng, lead, leads[-1], number, zones, stage="lead")
    def of(name: str) -> list[str]:
        return [cid for cid, scenario in data.scenario_of.items() if scenario.name == name]

    registrants = seed_webinars.add_webinars(data, of("new_signup"))
    seed_surveys.add_support(data, of("new_signup")[registrants:], of("long_ago"))
    data.lead_persona_of = seed_leads.add_leads(data, leads)
    return data


def _add_contact(data, rng, scenario, contact_id, number, zones, stage=None) -> None:
    now = data.loaded_at
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = {"valid": f"{first}.{last}.{number}@example.com".lower(),
             "invalid": f"{first}.{last}@@example", "missing": None}[scenario.email]
    phone = {"valid": f"+35840{number:07d}", "invalid": f"+1555{number % 10}",
             "missing": None}[scenario.phone]
    zone = "Mars/Olympus_Mons" if scenario.local_hour == "unknown_zone" else next(
        zones[scenario.local_hour])
    entered = now - (scenario.signed_up or scenario.became_customer or DAY * 40)
    stage = stage or ("customer" if scenario.became_customer else "subscriber")
    created = entered - HOUR
    contact = (contact_id, email, phone, first if scenario.first_name else None, last, zone,
               scenario.locale, stage, entered if scenario.became_customer else created,
               created, entered, now, seed_surveys.owner_for(number, stage))
    data.tables["crm_contacts"].append(contact)
    if scenario.duplicated_in_crm:  # an older export of the same contact
        data.tables["crm_contacts"].append(contact[:10] + (created, now, contact[12]))
    consents = data.tables["consents"]
    for channel, given in (("email", scenario.email_consent), ("sms", scenario.sms_consent)):
        consents.append((f"{contact_id}-{channel}-1", contact_id, channel, "opted_in",
                         "signup_form", created, now))
        if not given:
            consents.append((f"{contact_id}-{channel}-2", contact_id, channel, "opted_out",
                             "crm", created + HOUR / 2, now))
    if scenario.signed_up is not None:
        data.tables["signups"].append((f"S{number:05d}", contact_id,
                                       rng.choice(("free", "team")), entered, now))
    events = data.tables["events"]
    for i in range(rng.randint(0, 3)):
        events.append((f"E{number:05d}-{i}", contact_id, "logged_in",
                       entered + HOUR * rng.randint(1, 20), now))
    if scenario.activated_after is not None:
        events.append((f"E{number:05d}-act", contact_id, "activated",
                       entered + scenario.activated_after, now))


def load(conn, data: Dataset) -> dict[str, int]:
    """Replace the raw tables' rows with `data` using COPY; returns rows per table."""
    with conn.cursor() as cur:
        cur.execute("create schema if not exists raw")
        for table, columns in RAW_TABLES.items():
            # Truncate rather than drop, so dbt's views over these tables stay in place;
            # a table whose columns changed since it was made is made again.
            if _column_names(cur, table) != [c.split()[0] for c in columns.split(", ")]:
                cur.execute(f"drop table if exists raw.{table} cascade")
                cur.execute(f"create table raw.{table} ({columns})")
            cur.execute(f"truncate raw.{table}")
            buffer = io.StringIO("".join(copy_line(row) for row in data.tables[table]))
            cur.copy_expert(f"copy raw.{table} from stdin", buffer)
    ledger.ensure_schema(conn)
    return {table: len(rows) for table, rows in data.tables.items()}


def _column_names(cur, table: str) -> list[str]:
    cur.execute("select column_name from information_schema.columns where table_schema = 'raw'"
                " and table_name = %s order by ordinal_position", (table,))
    return [name for (name,) in cur.fetchall()]


def copy_line(row: tuple) -> str:
    """A row in COPY's text format."""
    return "\t".join(_copy_value(value) for value in row) + "\n"


def _copy_value(value) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")
