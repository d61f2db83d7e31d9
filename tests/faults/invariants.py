"""What must hold after every fault scenario, measured from what really happened: the
emulator's outbox (what the providers accepted), the ledger, the raw event tables, and
consent as the dbt views compute it from the raw sources at query time.

- nobody receives the same step of the same program (and enrollment) twice;
- nothing goes to a contact without consent for its channel at the moment it was sent;
- no ledger row stays in flight (`planned`, `sending`), and every row not sent says why;
- every event the emulator posted is stored exactly once;
- and, once reconcile has run after the events arrived, no message the providers accepted
  is still `unknown` (`unknown_sent`; a scenario asserts it where it reconciles).

The warehouse-side checks (`in_flight`, `unexplained`, `consent_at`) need nothing from the
tests and could serve a deployment check; the others need the emulator's records.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import parse_qsl, urlsplit

from nurture import catalog

# Consent as of a moment: the newest change at or before it decides, a withdrawal wins a
# tie, no record is no consent (int_consents_pivoted_to_contacts, at a point in time).
# Provider event timestamps have whole seconds: a change counts from the second after it,
# so a message's own unsubscribe or spam report never predates the message.
_CONSENT_AT = """
select s.ledger_id
  from unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])
       as s (ledger_id, contact_id, channel, sent_at)
 where not coalesce((
        select e.is_opted_in from intermediate.int_consent_events as e
         where e.contact_id = s.contact_id and e.channel = s.channel
           and e.changed_at < date_trunc('second', s.sent_at)
         order by e.changed_at desc, e.is_opted_in asc
         limit 1), false)
"""


@dataclass(frozen=True)
class Counts:
    scenario: str
    runs: int
    messages: int  # accepted by the providers
    duplicates: int  # messages beyond the first for one (program, step, contact, enrollment)
    to_withdrawn: int  # messages to a contact without consent for the channel when sent
    events_posted: int
    events_lost: int  # posted, never stored
    events_stored_twice: int
    in_flight: int  # ledger rows left planned or sending
    unexplained: int  # rows not sent that give no reason
    unknown: int  # rows whose outcome is still unknown (never re-sent)
    unknown_sent: int  # of those, how many the providers did accept: reconcile's work
    reconciled: int  # unknown rows a provider event proved sent

    def problems(self) -> list[str]:
        return [f"{name}: {value}" for name, value in asdict(self).items()
                if name in ("duplicates", "to_withdrawn", "events_lost", "events_stored_twice",
                            "in_flight", "unexplained") and value]


def check(conn, scenario: str, *, programs: Sequence[str], runs: int, outbox: list[dict],
          posted: Iterable[tuple[str, bytes]]) -> Counts:
    rows = _ledger(conn, programs)
    posted_keys = event_keys(posted)
    stored = _stored(conn, posted_keys)
    states = Counter(row["state"] for row in rows.values())
    return Counts(
        scenario=scenario,
        runs=runs,
        messages=len(outbox),
        duplicates=duplicates(outbox, rows),
        to_withdrawn=len(without_consent(conn, outbox, rows)),
        events_posted=len(posted_keys),
        events_lost=sum(stored.get(key, 0) == 0 for key in posted_keys),
        events_stored_twice=sum(count > 1 for count in stored.values()),
        in_flight=states["planned"] + states["sending"],
        unexplained=sum(row["state"] in ("failed", "unknown", "skipped") and not row["reason"]
                        for row in rows.values()),
        unknown=states["unknown"],
        unknown_sent=sum(rows.get(message.get("ledger_id") or "", {}).get("state") == "unknown"
                         for message in outbox),
        reconciled=sum(row["reason"] == "reconciled_from_provider_event"
                       for row in rows.values()),
    )


def _ledger(conn, programs: Sequence[str]) -> dict[str, dict]:
    with conn.cursor() as cur:
        cur.execute("select ledger_id::text, program, step, contact_id, enrollment_id, channel,"
                    " state, reason from nurture.message_ledger where program = any(%s)",
                    (list(programs),))
        columns = [c.name for c in cur.description]
        return {row[0]: dict(zip(columns, row, strict=True)) for row in cur}


def _identity(message: dict, rows: dict[str, dict]) -> tuple:
    """A message's ledger key; without a ledger row, what the provider saw of it."""
    row = rows.get(message.get("ledger_id") or "")
    if row:
        return row["program"], row["step"], row["contact_id"], row["enrollment_id"]
    return message["program"], message["step"], message["recipient"]


def duplicates(outbox: list[dict], rows: dict[str, dict]) -> int:
    counts = Counter(_identity(message, rows) for message in outbox)
    return sum(count - 1 for count in counts.values())


def without_consent(conn, outbox: list[dict], rows: dict[str, dict]) -> list[str]:
    """Ledger ids of messages that reached a provider while their contact had no consent
    for the channel (internal alerts, to a colleague, are exempt)."""
    sends = []
    for message in outbox:
        row = rows.get(message.get("ledger_id") or "")
        if row and not catalog.program(row["program"]).step(row["step"]).is_internal:
            sends.append((row["ledger_id"], row["contact_id"], row["channel"],
                          message["received_at"]))
    if not sends:
        return []
    with conn.cursor() as cur:
        cur.execute(_CONSENT_AT, [list(column) for column in zip(*sends, strict=True)])
        return [ledger_id for (ledger_id,) in cur]


def event_keys(posted: Iterable[tuple[str, bytes]]) -> set[tuple[str, ...]]:
    """The identity each raw table stores an event under, for every event posted."""
    keys = set()
    for url, body in posted:
        path = urlsplit(url).path
        if path.endswith("/webhooks/sendgrid"):
            keys |= {("sendgrid", event["sg_event_id"]) for event in json.loads(body)}
        else:
            form = dict(parse_qsl(body.decode()))
            if path.endswith("/webhooks/twilio/status"):
                keys.add(("twilio_status", form["MessageSid"], form["MessageStatus"]))
            elif path.endswith("/webhooks/twilio/inbound"):
                keys.add(("twilio_inbound", form["MessageSid"]))
    return keys


def _stored(conn, keys: set[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    """How many rows hold each event (the primary keys say at most one: checked anyway)."""
    with conn.cursor() as cur:
        cur.execute("select 'sendgrid', sg_event_id, count(*) from raw.sendgrid_events"
                    " where sg_event_id = any(%s) group by 2",
                    ([key[1] for key in keys if key[0] == "sendgrid"],))
        found = {(kind, key): count for kind, key, count in cur}
        cur.execute("select message_sid, message_status, count(*)"
                    " from raw.twilio_status_callbacks where message_sid = any(%s) group by 1, 2",
                    ([key[1] for key in keys if key[0] == "twilio_status"],))
        found |= {("twilio_status", sid, status): count for sid, status, count in cur}
        cur.execute("select message_sid, count(*) from raw.twilio_inbound_messages"
                    " where message_sid = any(%s) group by 1",
                    ([key[1] for key in keys if key[0] == "twilio_inbound"],))
        found |= {("twilio_inbound", sid): count for sid, count in cur}
    return found
