"""What happens after a send closes the loop: the emulator posts signed events back to the
receiver, dbt turns them into consent, and the next run of onboarding respects them.

Contacts are steered into the emulator's test behaviours (bounce / spam / unsubscribe
addresses, an SMS STOP, a STOP then START, an unsubscribe link clicked), then moved two
days back so their next step falls due, and the DAG runs again.
"""

from __future__ import annotations

import httpx
import pytest

from nurture import runner, seed, warehouse
from nurture.emulator import OutboxStore, post_inbound

pytestmark = pytest.mark.e2e

EMAIL_TEST_ADDRESSES = {"C00001": "bounce", "C00002": "spam", "C00003": "unsubscribe"}
LINK_CLICKER, EMAIL_CONTROL = "C00004", "C00005"


def execute(sql: str, params=None):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


@pytest.fixture(scope="module")
def loop(fresh_onboarding, tmp_path_factory):
    data = seed.build()
    with warehouse.connect() as conn:
        seed.load(conn, data)
    for contact_id, kind in EMAIL_TEST_ADDRESSES.items():
        execute("update raw.crm_contacts set email = %s where contact_id = %s",
                (f"{kind}.{contact_id.lower()}@example.com", contact_id))
    night = [cid for cid, s in data.scenario_of.items() if s.name == "day_7_at_night"]
    stopper, restarter = night[0], night[1]
    phone = {row[0]: row[2] for row in data.tables["crm_contacts"]}

    outbox = tmp_path_factory.mktemp("loop") / "outbox.sqlite"
    with runner.emulated_providers(outbox) as providers:
        first = runner.run_program("onboarding")
        providers.wait_for_events()
        sent_first = OutboxStore(outbox).messages()
        link = next(m for m in sent_first
                    if m["channel"] == "email" and _contact_of(m) == LINK_CLICKER)
        url = link["request"]["headers"]["List-Unsubscribe"].strip("<>")
        assert httpx.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        for contact_id, replies in ((stopper, ["STOP"]), (restarter, ["STOP", "START"])):
            for body in replies:
                post_inbound(providers.url, body, phone[contact_id])
                providers.wait_for_events()
        # Two days on: setup tips fall due for the first-run welcomes, and the night-time
        # SMS contacts wake up in a daytime zone, so their check-in is due and in window.
        everyone = [*EMAIL_TEST_ADDRESSES, LINK_CLICKER, EMAIL_CONTROL]
        execute("update raw.signups set signed_up_at = signed_up_at - interval '2 days'"
                " where contact_id = any(%s)", (everyone,))
        day_zone = execute("select time_zone from raw.crm_contacts where contact_id = %s",
                           (first_day_contact(data),))[0][0]
        execute("update raw.crm_contacts set time_zone = %s where contact_id = any(%s)",
                (day_zone, [stopper, restarter]))
        second = runner.run_program("onboarding")
        providers.wait_for_events()
        sent_second = OutboxStore(outbox).messages()[len(sent_first):]
    return {"first": first, "second": second, "sent_first": sent_first,
            "sent_second": sent_second, "stopper": stopper, "restarter": restarter}


def _contact_of(message) -> str | None:
    rows = execute("select contact_id from nurture.message_ledger where ledger_id = %s",
                   (message["ledger_id"],))
    return rows[0][0] if rows else None


def first_day_contact(data) -> str:
    return next(cid for cid, s in data.scenario_of.items() if s.name == "day_7")


def sent_to(messages, step: str) -> set[str]:
    return {_contact_of(m) for m in messages if m["step"] == step}


def test_both_runs_succeed(loop):
    assert loop["first"].state == loop["second"].state == "success"


def test_events_landed_raw_and_became_consent(loop):
    """The second run's report rebuilt consent_history and message_sends from them."""
    sources = dict(execute(
        "select contact_id || '/' || channel, consent_source from marts.consent_history"
        " where is_current and not is_opted_in"))
    assert sources["C00001/email"] == "hard_bounce"
    assert sources["C00002/email"] == "spamreport"
    assert sources["C00003/email"] == "unsubscribe"
    assert sources[f"{LINK_CLICKER}/email"] == "unsubscribe_link"
    assert sources[f"{loop['stopper']}/sms"] == "sms_stop"
    assert f"{loop['restarter']}/sms" not in sources  # START came last
    delivered, opened = execute(
        "select count(*) filter (where was_delivered), count(*) filter (where was_opened)"
        " from marts.message_sends where program = 'onboarding' and channel = 'email'")[0]
    assert delivered > 0 and opened > 0


def test_the_next_run_respects_withdrawn_consent(loop):
    tips = sent_to(loop["sent_second"], "setup_tips")
    assert EMAIL_CONTROL in tips
    assert tips.isdisjoint({*EMAIL_TEST_ADDRESSES, LINK_CLICKER})
    check_ins = sent_to(loop["sent_second"], "check_in")
    assert loop["restarter"] in check_ins and loop["stopper"] not in check_ins
    reasons = dict(execute(
        "select contact_id, reason from nurture.message_ledger where program = 'onboarding'"
        " and step = 'setup_tips' and contact_id = any(%s)", (list(EMAIL_TEST_ADDRESSES),)))
    assert set(reasons.values()) == {"no_consent"}


def test_nobody_got_a_step_twice(loop):
    pairs = [(m["recipient"], m["step"]) for m in loop["sent_first"] + loop["sent_second"]]
    assert len(pairs) == len(set(pairs))
