"""Property: whatever order consent changes arrive in, and from whichever source, the consent
dbt derives per contact and channel is what a small reference model says — the newest
change wins, a tie withdraws, no change means no consent, and events that are not consent
changes change nothing — and the planner never plans a message without consent.

Events are written to the raw tables in the shapes the CRM export, the webhook receiver
and the dispatcher write them, and read back through the project's own dbt views (staging
-> int_consent_events -> int_consents_pivoted_to_contacts), built once for the module.
Each example runs in one transaction that is rolled back: other tests never see its rows.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nurture import ledger, seed, warehouse
from nurture.planner import SEND, decide, make_plan, resume_stranded
from nurture.program import Program, Sender, email, sms

MODEL = "int_consents_pivoted_to_contacts"
PROGRAM_NAME = "consent_property"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONTACTS = ("P-1", "P-2", "P-3")  # never in the demo data
PHONES = {contact: f"+44794600000{n}" for n, contact in enumerate(CONTACTS, 1)}
STRANGER = "+447946000099"  # a number no contact has

# Twilio's default keywords (OPTOUT and REVOKE since 2025-05-14, the FCC revocation rule):
# the whole message, any case, surrounding white space ignored.
OPT_OUT_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE")
OPT_IN_WORDS = ("START", "YES", "UNSTOP")
OTHER_REPLIES = ("HELP", "INFO", "stop please", "Please CANCEL", "Thanks!", "")

# What each SendGrid event means for consent: False withdraws, True opts in, None nothing.
# A "blocked" bounce is SendGrid's soft bounce (event bounce, type blocked).
SENDGRID_EFFECT = {
    "unsubscribe": False, "group_unsubscribe": False, "spamreport": False, "bounce": False,
    "group_resubscribe": True,
    "blocked": None, "dropped": None, "processed": None, "deferred": None, "delivered": None,
    "open": None, "click": None,
}
SENDGRID_DETAILS = {
    "bounce": {"type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 no such user"},
    "blocked": {"type": "blocked", "status": "4.0.0", "reason": "451 try again later"},
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "deferred": {"response": "400 try again later", "attempt": "1"},
    "group_unsubscribe": {"asm_group_id": 42},
    "group_resubscribe": {"asm_group_id": 42},
}
# Ledger outcomes of an SMS send: Twilio refusing an opted-out number withdraws consent.
LEDGER_OUTCOMES = {
    "21610": ("failed", "provider_rejected: Twilio answered 400 (error 21610): "
                        "Attempt to send to unsubscribed recipient"),
    "21211": ("failed", "provider_rejected: Twilio answered 400 (error 21211): "
                        "Invalid 'To' Phone Number"),
    "sent": ("sent", None),
}


@dataclass(frozen=True)
class Event:
    """One raw row; `detail` is the CRM status, link source, SendGrid event, SMS body or
    ledger outcome, depending on `source`."""

    source: str  # crm | link | sendgrid | sms_reply | sms_stranger | ledger
    contact: str
    channel: str
    minute: int
    detail: str

    @property
    def at(self) -> datetime:
        return T0 + timedelta(minutes=self.minute)


def effect(event: Event) -> bool | None:
    """The reference meaning of one event: True opts in, False withdraws, None no change."""
    if event.source == "crm":
        return event.detail == "opted_in"
    if event.source == "link":
        return False
    if event.source == "sendgrid":
        return SENDGRID_EFFECT[event.detail]
    if event.source == "sms_reply":
        word = event.detail.strip().upper()
        return False if word in OPT_OUT_WORDS else True if word in OPT_IN_WORDS else None
    if event.source == "ledger":
        return False if event.detail == "21610" else None
    return None  # a reply from a number that is no contact's


def reference(events: Sequence[Event]) -> dict[tuple[str, str], tuple[bool, datetime | None]]:
    """(consent, time of the deciding change) per contact and channel."""
    changes: dict[tuple[str, str], list[tuple[int, bool]]] = {}
    for event in events:
        change = effect(event)
        if change is not None:
            changes.setdefault((event.contact, event.channel), []).append((event.minute, change))
    state = {}
    for contact in CONTACTS:
        for channel in ("email", "sms"):
            items = changes.get((contact, channel))
            if not items:
                state[(contact, channel)] = (False, None)
                continue
            newest = max(minute for minute, _ in items)
            state[(contact, channel)] = (
                all(change for minute, change in items if minute == newest),
                T0 + timedelta(minutes=newest),
            )
    return state


def reply_bodies(words: Sequence[str]) -> st.SearchStrategy[str]:
    """Each word as people type it: any case, stray spaces or a line break around it."""
    return st.sampled_from(words).flatmap(
        lambda word: st.sampled_from([word, word.lower(), word.capitalize(), f"  {word} ",
                                    f"{word}\r\n"]))


contacts = st.sampled_from(CONTACTS)
channels = st.sampled_from(["email", "sms"])
minutes = st.integers(min_value=0, max_value=5)  # few distinct times: ties happen
event_strategy = st.one_of(
    st.builds(Event, st.just("crm"), contacts, channels, minutes,
              st.sampled_from(["opted_in", "opted_out"])),
    st.builds(Event, st.just("link"), contacts, channels, minutes,
              st.sampled_from(["one_click", "page"])),
    st.builds(Event, st.just("sendgrid"), contacts, st.just("email"), minutes,
              st.sampled_from(list(SENDGRID_EFFECT))),
    st.builds(Event, st.just("sms_reply"), contacts, st.just("sms"), minutes,
              reply_bodies(OPT_OUT_WORDS + OPT_IN_WORDS) | st.sampled_from(OTHER_REPLIES)),
    st.builds(Event, st.just("sms_stranger"), contacts, st.just("sms"), minutes,
              reply_bodies(OPT_OUT_WORDS + OPT_IN_WORDS)),
    st.builds(Event, st.just("ledger"), contacts, st.just("sms"), minutes,
              st.sampled_from(list(LEDGER_OUTCOMES))),
)


def phone_formats(e164: str) -> list[str]:
    """The same number as a CRM may hold it; staging strips spaces, dots, hyphens, parens."""
    code, rest = e164[:3], e164[3:]
    return [e164, f"{code} {rest[:4]} {rest[4:]}", f"{code} ({rest[:4]}) {rest[4:7]}-{rest[7:]}",
            f"{code}.{rest[:4]}.{rest[4:]}"]


crm_phones = st.fixed_dictionaries(
    {contact: st.sampled_from(phone_formats(phone)) for contact, phone in PHONES.items()})


@pytest.fixture(scope="module")
def consent_views(warehouse_url):
    """The raw tables and the dbt views over them; demo data only if nothing was loaded."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('raw.crm_contacts')")
        if cur.fetchone()[0] is None:
            seed.load(conn, seed.build())
        ledger.ensure_schema(conn)  # also the receiver's raw tables
    result = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "run", "--quiet", "-s", f"+{MODEL}"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def derive(events: Sequence[Event], phones: dict[str, str] | None = None):
    """Write the events raw, read consent back through the dbt views, roll everything back."""
    phones = phones or PHONES
    with warehouse.connect() as conn, conn.cursor() as cur:
        try:
            for contact in CONTACTS:
                cur.execute(
                    "insert into raw.crm_contacts (contact_id, email, phone, lifecycle_stage,"
                    " created_at, updated_at, _loaded_at) values (%s, %s, %s, 'subscriber',"
                    " %s, %s, now())",
                    (contact, f"{contact.lower()}@example.com", phones[contact],
                     T0 - timedelta(days=1), T0 - timedelta(days=1)))
            for n, event in enumerate(events):
                _insert(cur, n, event)
            cur.execute(
                "select contact_id, has_email_consent, email_consent_changed_at,"
                " has_sms_consent, sms_consent_changed_at"
                f" from intermediate.{MODEL} where contact_id = any(%s)", (list(CONTACTS),))
            rows = {row[0]: row[1:] for row in cur.fetchall()}
        finally:
            conn.rollback()
    derived = {}
    for contact in CONTACTS:
        has_email, email_at, has_sms, sms_at = rows.get(contact, (False, None, False, None))
        derived[(contact, "email")] = (has_email, email_at)
        derived[(contact, "sms")] = (has_sms, sms_at)
    return derived


def _insert(cur, n: int, event: Event) -> None:
    """One event as its writer stores it (seed.RAW_TABLES, webhooks.storage, ledger)."""
    if event.source == "crm":
        cur.execute(
            "insert into raw.consents values (%s, %s, %s, %s, 'crm', %s, now())",
            (f"{event.contact}-{n}", event.contact, event.channel, event.detail, event.at))
    elif event.source == "link":
        digest = hashlib.sha256(f"{event.contact}-{n}".encode()).hexdigest()
        request = {"token_digest": digest, "contact_id": event.contact,
                   "channel": event.channel, "source": event.detail,
                   "issued_at": (T0 - timedelta(days=1)).isoformat()}
        cur.execute(
            "insert into raw.unsubscribe_requests (token_digest, contact_id, channel, source,"
            " received_at, payload) values (%s, %s, %s, %s, %s, %s::jsonb)",
            (digest, event.contact, event.channel, event.detail, event.at, json.dumps(request)))
    elif event.source == "sendgrid":
        ledger_id = _ledger_row(cur, n, event, "sent", None)
        name = "bounce" if event.detail == "blocked" else event.detail
        payload = {"ledger_id": ledger_id, "program": PROGRAM_NAME, "step": f"step_{n}",
                   "email": f"{event.contact.lower()}@example.com",
                   "timestamp": int(event.at.timestamp()),
                   "sg_message_id": f"msg{n}.filterdrecv-prop-{n}.0", "event": name,
                   "sg_event_id": f"prop-{uuid.uuid4().hex}",
                   **SENDGRID_DETAILS.get(event.detail, {})}
        cur.execute(
            "insert into raw.sendgrid_events (sg_event_id, event, received_at, payload)"
            " values (%s, %s, %s, %s::jsonb)",
            (payload["sg_event_id"], name, event.at + timedelta(seconds=30),
             json.dumps(payload)))
    elif event.source in ("sms_reply", "sms_stranger"):
        sid = f"SM{uuid.uuid4().hex}"
        sender = PHONES[event.contact] if event.source == "sms_reply" else STRANGER
        form = {"MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": "AC0",
                "From": sender, "To": "+15005550006", "Body": event.detail, "NumMedia": "0",
                "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01"}
        cur.execute(
            "insert into raw.twilio_inbound_messages (message_sid, received_at, payload)"
            " values (%s, %s, %s::jsonb)", (sid, event.at, json.dumps(form)))
    else:
        _ledger_row(cur, n, event, *LEDGER_OUTCOMES[event.detail])


def _ledger_row(cur, n: int, event: Event, state: str, reason: str | None) -> str:
    ledger_id = str(uuid.uuid4())
    cur.execute(
        "insert into nurture.message_ledger (ledger_id, program, step, contact_id,"
        " enrollment_id, channel, state, reason, due_at, planned_at, updated_at)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (ledger_id, PROGRAM_NAME, f"step_{n}", event.contact, f"signup:{event.contact}",
         event.channel, state, reason, T0, T0, event.at))
    return ledger_id


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_strategy, max_size=14), phones=crm_phones)
def test_derived_consent_matches_the_reference_model(consent_views, events, phones):
    assert derive(events, phones) == reference(events)


@pytest.mark.parametrize("body", ["OPTOUT", "revoke", "STOP\n", "\tstop\r\n"])
def test_opt_out_keywords_withdraw_sms_consent(consent_views, body):
    """Twilio's 2025 keywords, and a keyword with a line break after it."""
    events = [Event("crm", "P-1", "sms", 0, "opted_in"), Event("sms_reply", "P-1", "sms", 1, body)]
    assert derive(events)[("P-1", "sms")] == (False, T0 + timedelta(minutes=1))


PROGRAM = Program(name="prop", holdout=0, audience="prop_audience", goal="is_activated",
                  steps=(email("hello", after=timedelta(0)), sms("ping", after=timedelta(0))),
                  sender=Sender("hello@nurture.example", "Nurture"))
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)

audience_rows = st.lists(
    st.fixed_dictionaries({
        "has_email_consent": st.sampled_from([True, False, None]),
        "has_sms_consent": st.sampled_from([True, False, None]),
        "is_activated": st.booleans(),
        "minutes_late": st.integers(0, 600),
        "earlier_state": st.sampled_from([None, "planned", "sending", "sent"]),
    }),
    max_size=8,
)


@given(rows=audience_rows)
def test_no_message_is_planned_without_consent(rows):
    """Neither a new plan nor a resumed earlier one sends to a contact without consent
    (None, as a missing consent row reads, is no consent) or past the goal."""
    audience, existing, stranded = [], {}, []
    for n, row in enumerate(rows):
        contact = dict(contact_id=f"c{n}", enrollment_id=f"e{n}",
                       enrolled_at=NOW - timedelta(minutes=row["minutes_late"]),
                       email="anna@example.com", phone="+358401234567", locale="en",
                       time_zone="Europe/Helsinki", is_activated=row["is_activated"],
                       has_email_consent=row["has_email_consent"],
                       has_sms_consent=row["has_sms_consent"])
        audience.append(contact)
        for step in PROGRAM.steps:
            assert decide(PROGRAM, step, contact, now=NOW).action != SEND or (
                contact[f"has_{step.channel}_consent"] is True and not row["is_activated"])
            if row["earlier_state"]:
                existing[(step.name, f"c{n}", f"e{n}")] = row["earlier_state"]
                stranded.append(dict(ledger_id=f"{step.name}-c{n}", step=step.name,
                                     contact_id=f"c{n}", enrollment_id=f"e{n}",
                                     state=row["earlier_state"]))
    plan = make_plan(PROGRAM, audience, existing, now=NOW, batch_size=3)
    stranded = [row for row in stranded if row["state"] in ("planned", "sending")]
    by_key = {(c["contact_id"], c["enrollment_id"]): c for c in audience}
    resumed = resume_stranded(PROGRAM, plan, stranded, by_key, now=NOW, batch_size=3)
    sends = [(e.step, e.contact_id) for e in plan.entries if e.state == "planned"]
    sends += [ledger_id.split("-") for ledger_id, _ in resumed.adopt]
    channel = {step.name: step.channel for step in PROGRAM.steps}
    for step_name, contact_id in sends:
        contact = by_key[(contact_id, contact_id.replace("c", "e"))]
        assert contact[f"has_{channel[step_name]}_consent"] is True
        assert not contact["is_activated"]
