"""The onboarding program end to end: demo data → dbt (Cosmos) → guard (GX) → plan →
SendGrid/Twilio SDKs → emulator, through Airflow's `dag.test()`, run three times
(a dry run, then twice for real).

The oracle is the demo dataset's scenarios (what should happen to each kind of contact),
not the planner's code.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from nurture import ledger, runner, seed, warehouse
from nurture.emulator import OutboxStore
from nurture.policies import in_holdout

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(fresh_onboarding):
    data = seed.build()
    with warehouse.connect() as conn:
        seed.load(conn, data)
    return data


@pytest.fixture(scope="module")
def three_runs(demo, tmp_path_factory):
    """(dry run, first run, second run) results with the outbox after each, and the
    receiver's URL (NURTURE_PUBLIC_URL during the runs)."""
    outbox_path = tmp_path_factory.mktemp("outbox") / "outbox.sqlite"
    with runner.emulated_providers(outbox_path) as providers:
        store = OutboxStore(outbox_path)
        results = []
        for dry_run in (True, False, False):
            result = runner.run_program("onboarding", dry_run=dry_run)
            results.append((result, store.messages()))
    return results, providers.receiver_url


@pytest.fixture(scope="module")
def runs(three_runs):
    return three_runs[0]


@pytest.fixture(scope="module")
def public_url(three_runs):
    return three_runs[1]


def contact_by_recipient(demo) -> dict[str, str]:
    index = {}
    for row in demo.tables["crm_contacts"]:
        contact_id, email, phone = row[0], row[1], row[2]
        for address in (email, phone):
            if address:
                index[address] = contact_id
    return index


HOLDOUT = 0.05  # onboarding's share (the Program default)


def expected_outcome(contact_id: str, planned_outcome: str) -> str:
    """The scenario's outcome, unless the contact is in the holdout group: then whatever
    would have been sent (or failed to render) is recorded held_out instead."""
    if planned_outcome in ("sent", "template_error") and in_holdout("onboarding", contact_id,
                                                                     HOLDOUT):
        return "held_out"
    return planned_outcome


def expected_sends(demo) -> Counter:
    expected = Counter()
    for row in {r[0]: r for r in demo.tables["crm_contacts"]}.values():
        scenario = demo.scenario_of.get(row[0])
        for step, outcome in (scenario.expected.items() if scenario else ()):
            if expected_outcome(row[0], outcome) == "sent":
                expected[(row[2] if step == "check_in" else row[1], step)] += 1
    return expected


def sent_pairs(messages) -> Counter:
    return Counter((m["recipient"], m["step"]) for m in messages)


def test_every_run_succeeds(runs):
    assert [result.state for result, _ in runs] == ["success"] * 3


def test_dry_run_plans_but_sends_and_records_nothing(runs, demo):
    dry, _ = runs[0]
    first_outbox_before = runs[0][1]
    assert first_outbox_before == []
    assert dry.summary["dry_run"] is True
    assert dry.summary["planned"] == sum(expected_sends(demo).values())
    assert dry.summary["sent"] == 0


def test_first_run_sends_exactly_the_expected_messages(runs, demo):
    _, outbox = runs[1]
    assert sent_pairs(outbox) == expected_sends(demo)
    assert runs[1][0].summary["sent"] == len(outbox)


def test_second_run_sends_nothing_new_and_says_so(runs):
    (first, first_outbox), (second, second_outbox) = runs[1], runs[2]
    assert second_outbox == first_outbox
    assert second.summary["sent"] == 0 and second.summary["planned"] == 0
    for before, after in zip(first.summary["steps"], second.summary["steps"], strict=True):
        assert after["not_sent"].get("already_sent", 0) == before["sent"]


def test_no_message_without_consent_or_after_activation(runs, demo):
    owner = contact_by_recipient(demo)
    for message in runs[2][1]:
        scenario = demo.scenario_of[owner[message["recipient"]]]
        consent = scenario.email_consent if message["channel"] == "email" else scenario.sms_consent
        assert consent, message
        assert scenario.activated_after is None, message


def test_sms_only_inside_the_local_send_window(runs, demo):
    zone_of = {row[0]: row[5] for row in demo.tables["crm_contacts"]}
    owner = contact_by_recipient(demo)
    sms = [m for m in runs[2][1] if m["channel"] == "sms"]
    assert sms
    for message in sms:
        received = datetime.fromisoformat(message["received_at"])
        local = received.astimezone(ZoneInfo(zone_of[owner[message["recipient"]]])).time()
        assert time(9) <= local < time(20), message


def test_ledger_records_each_scenarios_outcome(runs, demo):
    with warehouse.connect() as conn:
        states = ledger.existing_states(conn, "onboarding")
        with conn.cursor() as cur:
            cur.execute("select step, contact_id, reason from nurture.message_ledger"
                        " where program = 'onboarding'")
            reasons = {(step, contact): reason for step, contact, reason in cur}
    mismatches = []
    for contact_id, scenario in demo.scenario_of.items():
        enrollment = f"onboarding:{contact_id}"
        for step, planned_outcome in scenario.expected.items():
            expected = expected_outcome(contact_id, planned_outcome)
            state = states.get((step, contact_id, enrollment))
            reason = (reasons.get((step, contact_id)) or "").split(":", 1)[0]
            actual = {None: "not_due", "sent": "sent"}.get(state, reason)
            if state is None and expected == "outside_send_window":
                actual = "outside_send_window"  # waits: nothing recorded yet
            if actual != expected:
                mismatches.append((scenario.name, contact_id, step, expected, state, reason))
    assert mismatches == []


def test_messages_map_back_to_the_ledger_without_personal_data(runs, public_url):
    _, outbox = runs[2]
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select ledger_id::text, provider_message_id, template_version"
                    " from nurture.message_ledger where state = 'sent'"
                    " and program = 'onboarding'")
        sent = {ledger_id: (message_id, version) for ledger_id, message_id, version in cur}
    assert len(sent) == len(outbox)
    for message in outbox:
        message_id, version = sent[message["ledger_id"]]
        assert message_id == message["message_id"] and version
        if message["channel"] == "email":
            args = message["request"]["personalizations"][0].get("custom_args") or \
                message["request"].get("custom_args")
            assert set(args) == {"ledger_id", "program", "step"}
            headers = message["request"]["headers"]
            assert headers["List-Unsubscribe"].startswith(f"<{public_url}/unsubscribe/")
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        else:
            assert message["request"]["StatusCallback"].startswith(
                f"{public_url}/webhooks/twilio/status?")


def test_message_sends_mart_has_one_row_per_ledger_entry(runs):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select count(*) from nurture.message_ledger where program = 'onboarding'")
        ledger_rows = cur.fetchone()[0]
        cur.execute("select count(*), count(*) filter (where was_sent) from marts.message_sends"
                    " where program = 'onboarding'")
        mart_rows, mart_sent = cur.fetchone()
    assert mart_rows == ledger_rows
    assert mart_sent == len(runs[2][1])


def test_the_holdout_group_receives_nothing_and_stays_the_same(runs, demo):
    """Held-out contacts are recorded held_out for what they would have been sent, get
    nothing in any run, and the second run holds out the same people (no new rows)."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select contact_id, count(distinct dag_run_id) from nurture.message_ledger"
                    " where program = 'onboarding' and reason = 'held_out' group by contact_id")
        held = dict(cur.fetchall())
    would_have_sent = {contact_id for contact_id, scenario in demo.scenario_of.items()
                       if {"sent", "template_error"} & set(scenario.expected.values())}
    assert set(held) == {c for c in would_have_sent if in_holdout("onboarding", c, HOLDOUT)}
    assert held and set(held.values()) == {1}  # decided once, by the first real run
    addresses = contact_by_recipient(demo)
    received = {addresses[m["recipient"]] for _, outbox in runs for m in outbox}
    assert received.isdisjoint(held)
