"""A contact withdraws consent after the plan and before the send: the dispatcher reads the
contact again at send time, so the message must not go.

The withdrawals are the real ones, through the receiver: a one-click unsubscribe from an
email's List-Unsubscribe link, and an SMS STOP (which the emulator, like Twilio, also
enforces by refusing the number with error 21610).
"""

from __future__ import annotations

import httpx
import pytest

from nurture import tasks, warehouse
from nurture.emulator import post_inbound

pytestmark = pytest.mark.e2e

WITHDRAWING = 3  # per channel, among the contacts the plan chose


def planned(step: str) -> list[tuple[str, str]]:
    """(contact_id, recipient) of the planned messages of a step, in a stable order."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select contact_id, recipient from nurture.message_ledger"
                    " where program = 'onboarding' and step = %s and state = 'planned'"
                    " order by contact_id limit %s", (step, WITHDRAWING))
        return cur.fetchall()


def outcomes(contacts: list[str]) -> dict[str, tuple[str, str]]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select contact_id || '/' || channel, state, reason"
                    " from nurture.message_ledger where program = 'onboarding'"
                    " and contact_id = any(%s) and step in ('welcome', 'check_in')", (contacts,))
        return {key: (state, reason) for key, state, reason in cur}


def test_a_withdrawal_after_the_plan_stops_the_send(scenario, monkeypatch):
    plan = tasks.plan
    withdrawn: dict[str, list[str]] = {}
    with scenario.providers() as providers:

        def plan_then_withdraw(program, **kwargs):
            made = plan(program, **kwargs)
            for contact_id, _ in planned("welcome"):
                token = providers.signer.issue("unsubscribe", contact_id, "email")
                response = httpx.post(f"{providers.receiver.url}/unsubscribe/{token}",
                                      data={"List-Unsubscribe": "One-Click"})
                assert response.status_code == 200
                withdrawn.setdefault("email", []).append(contact_id)
            for contact_id, phone in planned("check_in"):
                post_inbound(providers.url, "STOP", phone)
                withdrawn.setdefault("sms", []).append(contact_id)
            providers.wait_for_events()
            return made

        monkeypatch.setattr(tasks, "plan", plan_then_withdraw)
        result = scenario.run()
        providers.wait_for_events()
    counts = scenario.check("consent withdrawn between plan and send")

    assert result.state == "success"
    assert withdrawn["email"]
    assert counts.messages > 0
    assert counts.problems() == []
    reasons = outcomes([c for contacts in withdrawn.values() for c in contacts])
    for contact_id in withdrawn["email"]:
        assert reasons[f"{contact_id}/email"] == ("skipped", "no_consent_at_send")
    for contact_id in withdrawn.get("sms", []):
        state, reason = reasons[f"{contact_id}/sms"]
        assert state != "sent" and reason, (contact_id, state, reason)
