"""The providers' events arrive late, out of order, each twice, while the receiver restarts:
every valid event is stored once, none is lost (the providers retry, as SendGrid does for a
day).

And one thing the events are for: an SMS whose send answer was lost (`unknown`) is proved
sent by its status callback — which carries the ledger id only in its URL.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from nurture import ledger, reconcile, runner, warehouse
from nurture.emulator.events import status_callback_forms, twilio_signature
from nurture.webhooks import create_app as create_receiver

from .harness import RecordingPoster

pytestmark = pytest.mark.e2e


def test_events_twice_out_of_order_across_a_receiver_restart(scenario):
    scenario.poster = RecordingPoster(duplicate=True)
    with scenario.providers() as providers:
        providers.poster.hold()  # the providers report later, in the reverse order
        result = scenario.run()
        providers.receiver.stop()
        providers.poster.release(reversed)
        time.sleep(1.5)  # posts fail meanwhile: connection refused, retried
        providers.receiver.start()
        providers.wait_for_events()
    counts = scenario.check("webhooks twice, out of order, across a receiver restart")

    assert result.state == "success"
    assert counts.events_posted > counts.messages > 0
    assert counts.problems() == []


PUBLIC_URL = "https://nurture.example/nurture"


def test_a_status_callback_reconciles_an_unknown_sms(warehouse_url):
    ledger_id = str(uuid.uuid4())
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        cur.execute(
            "insert into nurture.message_ledger (ledger_id, program, step, contact_id,"
            " enrollment_id, channel, state, reason, recipient, due_at) values (%s,"
            " 'faults_sms', 'check_in', 'C-faults', 'e1', 'sms', 'unknown',"
            " 'provider_outcome_unknown: Twilio did not answer', '+15005550101', %s)",
            (ledger_id, datetime.now(UTC)))
    token = runner.EMULATOR_CREDENTIALS["twilio_auth_token"]
    receiver = create_receiver(warehouse_url=warehouse_url, public_url=PUBLIC_URL,
                               sendgrid_public_key=None, twilio_auth_token=token)
    path = "/webhooks/twilio/status?" + urlencode(
        {"ledger_id": ledger_id, "program": "faults_sms", "step": "check_in"})
    record = {"message_id": "SM" + uuid.uuid4().hex,
              "request": {"To": "+15005550101", "StatusCallback": PUBLIC_URL + path}}
    try:
        with TestClient(receiver) as client:
            for form in status_callback_forms(record, runner.EMULATOR_CREDENTIALS[
                    "twilio_account_sid"]):
                response = client.post(path, data=form, headers={
                    "X-Twilio-Signature": twilio_signature(token, PUBLIC_URL + path, form)})
                assert response.status_code == 200, response.text
        with warehouse.connect() as conn:
            settled = reconcile.reconcile(conn, "faults_sms")
        assert settled == {"faults_sms": {"reconciled": 1, "still_unknown": 0}}
    finally:
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute("delete from nurture.message_ledger where program = 'faults_sms'")
            cur.execute("delete from raw.twilio_status_callbacks where message_sid = %s",
                        (record["message_id"],))
