"""Reconcile against the real warehouse: an `unknown` message becomes `sent` only when a
provider event proves the provider accepted it, and nothing else changes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg2
import pytest

from nurture import ledger, reconcile

PROGRAM = "reconcile_test"
OTHER = "reconcile_test_other"
DUE = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def conn(warehouse_url):
    conn = psycopg2.connect(warehouse_url)
    ledger.ensure_schema(conn)
    conn.commit()
    yield conn
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("delete from nurture.message_ledger where program in %s", ((PROGRAM, OTHER),))
        cur.execute("delete from raw.sendgrid_events where payload ->> 'program' in %s",
                    ((PROGRAM, OTHER),))
        cur.execute("delete from raw.twilio_status_callbacks where payload ->> 'program' in %s",
                    ((PROGRAM, OTHER),))
    conn.commit()
    conn.close()


def _row(conn, *, program=PROGRAM, step="welcome", channel="email", state="unknown",
         reason="provider_outcome_unknown: SendGrid did not answer: timed out") -> str:
    ledger_id = str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute(
            "insert into nurture.message_ledger (ledger_id, program, step, contact_id,"
            " enrollment_id, channel, state, reason, due_at, updated_at)"
            " values (%s, %s, %s, %s, 'e1', %s, %s, %s, %s, now() - interval '1 hour')",
            (ledger_id, program, step, f"C-{ledger_id[:8]}", channel, state, reason, DUE),
        )
    conn.commit()
    return ledger_id


def _sendgrid_event(conn, ledger_id: str, event: str, *, program=PROGRAM) -> None:
    payload = {"sg_event_id": uuid.uuid4().hex, "event": event, "ledger_id": ledger_id,
               "program": program, "sg_message_id": "SGX123.filter0001.1",
               "timestamp": int(datetime.now(UTC).timestamp())}
    with conn.cursor() as cur:
        cur.execute("insert into raw.sendgrid_events (sg_event_id, event, payload)"
                    " values (%s, %s, %s)", (payload["sg_event_id"], event, json.dumps(payload)))
    conn.commit()


def _twilio_status(conn, ledger_id: str, status: str) -> None:
    payload = {"MessageSid": "SM" + uuid.uuid4().hex, "MessageStatus": status,
               "ledger_id": ledger_id, "program": PROGRAM}
    with conn.cursor() as cur:
        cur.execute("insert into raw.twilio_status_callbacks (message_sid, message_status, payload)"
                    " values (%s, %s, %s)", (payload["MessageSid"], status, json.dumps(payload)))
    conn.commit()


def _state(conn, ledger_id: str) -> dict:
    with conn.cursor() as cur:
        cur.execute("select state, reason, provider_message_id, sent_at, updated_at"
                    " from nurture.message_ledger where ledger_id = %s", (ledger_id,))
        state, reason, message_id, sent_at, updated_at = cur.fetchone()
    return {"state": state, "reason": reason, "provider_message_id": message_id,
            "sent_at": sent_at, "updated_at": updated_at}


def test_provider_events_prove_unknown_messages_sent(conn):
    email = _row(conn)
    sms = _row(conn, step="check_in", channel="sms")
    silent = _row(conn, step="reminder")
    failed = _row(conn, step="late", state="failed", reason="provider_rejected: 400")
    attempted_at = _state(conn, email)["updated_at"]
    _sendgrid_event(conn, email, "processed")
    _sendgrid_event(conn, email, "delivered")  # two events, one resolution
    _twilio_status(conn, sms, "queued")
    _sendgrid_event(conn, failed, "processed")  # only `unknown` rows are reconciled

    counts = reconcile.reconcile(conn, PROGRAM)

    assert counts == {PROGRAM: {"reconciled": 2, "still_unknown": 1}}
    resolved = _state(conn, email)
    assert resolved["state"] == "sent"
    assert resolved["reason"] == reconcile.RECONCILED
    assert resolved["provider_message_id"] == "SGX123"
    assert resolved["sent_at"] == attempted_at  # when it went out, not when we learnt it
    assert _state(conn, sms)["state"] == "sent"
    assert _state(conn, sms)["provider_message_id"].startswith("SM")
    assert _state(conn, silent)["state"] == "unknown"  # no event is no proof either way
    assert _state(conn, failed)["state"] == "failed"
    # Running it again changes nothing and says what is left.
    assert reconcile.reconcile(conn, PROGRAM) == {PROGRAM: {"reconciled": 0, "still_unknown": 1}}


def test_reconcile_for_one_program_leaves_the_others(conn):
    mine, theirs = _row(conn), _row(conn, program=OTHER)
    _sendgrid_event(conn, mine, "processed")
    _sendgrid_event(conn, theirs, "processed", program=OTHER)

    assert reconcile.reconcile(conn, PROGRAM) == {PROGRAM: {"reconciled": 1, "still_unknown": 0}}
    assert _state(conn, theirs)["state"] == "unknown"
    counts = reconcile.reconcile(conn)
    assert counts[OTHER] == {"reconciled": 1, "still_unknown": 0}
    assert _state(conn, theirs)["state"] == "sent"


def test_nothing_unknown_is_nothing_to_do(conn):
    _row(conn, state="sent", reason=None)
    assert reconcile.reconcile(conn, PROGRAM) == {}
