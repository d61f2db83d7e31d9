"""The lead nurture program end to end, through Airflow's `dag.test()`: demo data → dbt
(Cosmos: lead scoring, the funnel, the audience) → guard (GX) → plan (holdout, frequency
cap across programs) → SendGrid SDK → emulator. Four runs:

    A  cap of 1: `webinar` (priority 60) invites the leads to W001, then `nurture`: the
       invited leads' first piece waits (frequency_cap_full); the MQL handoffs, internal,
       go out anyway
    B  cap back to its default (3): `nurture` sends the first piece to the rest
    C  after sales and the leads moved: a just-below lead asks for a demo (crosses), a hot
       lead's crossing is 30 hours old and unworked (SLA escalation), another hot lead is
       accepted by sales, a quiet lead is recycled (cooldown) — `nurture` again

The oracle is the demo dataset: the lead personas (`seed_leads`), their consents and
addresses, the CRM users (`seed_surveys.USERS`), and the holdout hash — not the audience
model or the planner.

The emulator posts no provider events here: every email it delivers would otherwise be
opened and clicked (12 fresh engagement points), and the invitations alone would make MQLs
of leads whose personas say they are not.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from nurture import ledger, runner, seed, seed_surveys, warehouse
from nurture.emulator import OutboxStore
from nurture.policies import in_holdout

pytestmark = pytest.mark.e2e

CAP_VARIABLE = "AIRFLOW_VAR_NURTURE_FREQUENCY_CAP"
HOLDOUT = 0.05  # both programs' share (the Program default)
VALID_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Personas marketing still owns and that are not MQLs: they get the track.
TRACK_PERSONAS = ("just_below", "went_cold", "quiet", "poor_fit", "no_profile", "recycled")
SALES_PERSONAS = ("sales_accepted", "sales_rejected", "won", "lost")
CONTENT = ("content_1", "content_2", "content_3", "content_4")
ACCOUNT_MANAGERS = [email for _, _, email, role in seed_surveys.USERS
                    if role == "account_manager"]  # in user_id order
SALES_MANAGER = next(email for _, _, email, role in seed_surveys.USERS
                     if role == "sales_manager")


def execute(sql: str, params=None):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def reset() -> None:
    """No nurture or webinar decisions, nothing upcoming, no seats, and a lead score
    history of this module's own (a crossing an earlier module recorded would date the
    hot leads' MQL in the past)."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        cur.execute("delete from nurture.message_ledger where program in ('nurture', 'webinar')")
        cur.execute("delete from nurture.upcoming_messages")
        cur.execute("delete from nurture.webinar_seats")
        cur.execute("select to_regclass('marts.lead_score_history') is not null")
        if cur.fetchone()[0]:
            cur.execute("delete from marts.lead_score_history")


@pytest.fixture(scope="module")
def demo(warehouse_url, airflow_db):
    reset()
    data = seed.build()
    with warehouse.connect() as conn:
        seed.load(conn, data)
    return data


# --- the oracle, from the demo rows ---------------------------------------------------

def leads_of(demo, *personas: str) -> list[str]:
    return sorted(c for c, p in demo.lead_persona_of.items() if p.name in personas)


def reachable(demo) -> set[str]:
    """Leads with a valid email address and email consent now."""
    latest: dict[tuple[str, str], tuple] = {}
    for _, contact, channel, status, _, recorded_at, _ in demo.tables["consents"]:
        if (contact, channel) not in latest or recorded_at >= latest[contact, channel][0]:
            latest[contact, channel] = (recorded_at, status)
    return {row[0] for row in demo.tables["crm_contacts"]
            if row[0] in demo.lead_persona_of and row[1] and VALID_EMAIL.match(row[1])
            and latest.get((row[0], "email"), (None, ""))[1] == "opted_in"}


def track_leads(demo) -> set[str]:
    """Leads the track is for: marketing's, not MQL, reachable (held out or not)."""
    return set(leads_of(demo, *TRACK_PERSONAS)) & reachable(demo)


def held_out(demo) -> set[str]:
    return {c for c in track_leads(demo) if in_holdout("nurture", c, HOLDOUT)}


def content_leads(demo) -> set[str]:
    return track_leads(demo) - held_out(demo)


def invited(demo) -> set[str]:
    """W001 (for leads) invites every reachable lead outside the webinar's holdout."""
    return {c for c in reachable(demo) if not in_holdout("webinar", c, HOLDOUT)}


def round_robin(contact_id: str) -> str:
    """The account manager a lead without an owner goes to (PostgreSQL's hashtext)."""
    [(seat,)] = execute("select abs(hashtext(%s)) %% %s", (contact_id, len(ACCOUNT_MANAGERS)))
    return ACCOUNT_MANAGERS[seat]


def owner_email(demo, contact_id: str) -> str:
    owner = next(row[12] for row in demo.tables["crm_contacts"] if row[0] == contact_id)
    if owner is None:
        return round_robin(contact_id)
    return next(email for user_id, _, email, _ in seed_surveys.USERS if user_id == owner)


def pick(demo) -> dict[str, str]:
    """The leads the module changes between runs B and C."""
    hot = leads_of(demo, "hot")
    quiet = leads_of(demo, "quiet")
    return {
        "crossing": leads_of(demo, "just_below")[0],  # asks for a demo: crosses
        "unworked": hot[0],  # its crossing moved 30 hours back: SLA missed
        "accepted": hot[1],  # sales accepts it now
        # recycled two days ago (one that got the first piece, if any did)
        "recycled_now": next((c for c in quiet if c in content_leads(demo)), quiet[0]),
    }


# --- the runs ------------------------------------------------------------------------

def ledger_rows(contact_id: str) -> list[tuple]:
    return execute("select step, enrollment_id, state, coalesce(reason, ''), dag_run_id"
                   " from nurture.message_ledger where program = 'nurture' and contact_id = %s"
                   " order by step, enrollment_id", (contact_id,))


def scores() -> dict[str, float]:
    return {c: float(s) for c, s in execute("select contact_id, total_score"
                                            " from marts.lead_scores")}


def move_things(demo, chosen: dict[str, str]) -> None:
    """What sales and the leads did between runs B and C."""
    crossing = chosen["crossing"]
    number = int(crossing[1:])
    execute("insert into raw.form_fills (fill_id, contact_id, form_name, filled_at, _loaded_at)"
            " values (%s, %s, 'demo_request', now() - interval '5 minutes', now())",
            (f"F{number:05d}-e2e", crossing))
    execute("update marts.lead_score_history set scored_at = scored_at - interval '30 hours'"
            " where contact_id = %s", (chosen["unworked"],))
    feedback = ("insert into raw.sales_feedback (feedback_id, contact_id, outcome, reason,"
                " recorded_at, recorded_by, _loaded_at)"
                " values (%s, %s, %s, %s, now() - %s::interval, 'U001', now())")
    execute(feedback, ("SF-e2e-accepted", chosen["accepted"], "accepted", None, "0 seconds"))
    execute(feedback, ("SF-e2e-recycled", chosen["recycled_now"], "recycled", "Not now",
                       "2 days"))


@pytest.fixture(scope="module")
def runs(demo, tmp_path_factory):
    """{name: (result, messages that run sent)} for "webinar", "A", "B", "C", plus the
    lead scores and deferred rows after A and the recycled quiet lead's ledger rows
    before C."""
    outbox_path = tmp_path_factory.mktemp("nurture") / "outbox.sqlite"
    chosen = pick(demo)
    done = {}
    with runner.emulated_providers(outbox_path, events=False), \
            pytest.MonkeyPatch.context() as patch:
        store = OutboxStore(outbox_path)

        def run(name: str, program: str) -> None:
            before = len(store.messages())
            result = runner.run_program(program)
            done[name] = (result, store.messages()[before:])

        patch.setenv(CAP_VARIABLE, "1")
        run("webinar", "webinar")
        run("A", "nurture")
        done["scores_after_A"] = scores()
        done["deferred_after_A"] = execute(
            "select contact_id, reason from nurture.message_ledger where program = 'nurture'"
            " and step = 'content_1' and state = 'deferred'")
        patch.delenv(CAP_VARIABLE)  # back to nurture_frequency_cap: 3
        run("B", "nurture")
        done["recycled_now_before_C"] = ledger_rows(chosen["recycled_now"])
        move_things(demo, chosen)
        run("C", "nurture")
    return done


@pytest.fixture(scope="module")
def chosen(demo):
    return pick(demo)


# --- what was sent, mapped back to contacts through the ledger ------------------------

def owners(messages) -> dict[str, tuple[str, str, str]]:
    """ledger_id -> (program, contact_id, enrollment_id)."""
    rows = execute("select ledger_id::text, program, contact_id, enrollment_id"
                   " from nurture.message_ledger where ledger_id = any(%s::uuid[])",
                   ([m["ledger_id"] for m in messages],))
    return {ledger_id: (program, contact, enrollment)
            for ledger_id, program, contact, enrollment in rows}


def sent_keys(messages, program: str = "nurture") -> Counter:
    """(contact_id, step) per message of `program`."""
    owner = owners(messages)
    return Counter((owner[m["ledger_id"]][1], m["step"]) for m in messages
                   if owner[m["ledger_id"]][0] == program)


def by_step(result) -> dict[str, dict]:
    return {entry["step"]: entry for entry in result.summary["steps"]}


def reasons(entry) -> Counter:
    return Counter(entry["not_sent"]) + Counter(entry["waiting"])


def every_message(runs) -> list[dict]:
    return [m for name in ("webinar", "A", "B", "C") for m in runs[name][1]]


# --- the tests -----------------------------------------------------------------------

def test_every_run_succeeds(runs):
    assert [runs[name][0].state for name in ("webinar", "A", "B", "C")] == ["success"] * 4


def test_the_demo_has_what_the_scenarios_need(demo, chosen):
    """Each scenario has someone in it: leads capped and not, someone held out."""
    assert content_leads(demo) & invited(demo) and content_leads(demo) - invited(demo)
    assert held_out(demo)
    assert chosen["recycled_now"] in content_leads(demo)


def test_the_webinar_invites_the_leads_first(runs, demo):
    invitations = {contact for contact, step in sent_keys(runs["webinar"][1], "webinar")
                   if step == "invitation"}
    assert invitations == invited(demo)


def test_a_capped_lead_gets_no_nurture_content_but_the_handoffs_go_out(runs, demo):
    result, messages = runs["A"]
    expected = Counter({(c, "content_1"): 1 for c in content_leads(demo) - invited(demo)})
    expected.update({(c, "mql_handoff"): 1 for c in leads_of(demo, "hot")})
    assert sent_keys(messages) == expected
    content_1 = by_step(result)["content_1"]
    # waiting for room: shown under "waiting" in the summary, `deferred` in the ledger
    assert content_1["waiting"]["frequency_cap_full"] == len(content_leads(demo) & invited(demo))
    assert set(runs["deferred_after_A"]) == {
        (c, "frequency_cap_full") for c in content_leads(demo) & invited(demo) - held_out(demo)}


def test_with_the_default_cap_the_rest_get_the_first_piece(runs, demo):
    result, messages = runs["B"]
    assert sent_keys(messages) == Counter(
        {(c, "content_1"): 1 for c in content_leads(demo) & invited(demo)})
    assert all("frequency_cap_full" not in reasons(entry) for entry in result.summary["steps"])
    assert result.summary["sent"] == len(messages)


def test_the_first_piece_reaches_exactly_the_track_leads(runs, demo):
    firsts = [key for name in ("A", "B", "C") for key in sent_keys(runs[name][1])
              if key[1] == "content_1"]
    assert sorted(c for c, _ in firsts) == sorted(content_leads(demo))
    recipients = {m["recipient"] for name in ("A", "B") for m in runs[name][1]
                  if m["step"] == "content_1"}
    emails = {row[0]: row[1] for row in demo.tables["crm_contacts"]}
    assert recipients == {emails[c] for c in content_leads(demo)}


def test_each_hot_lead_is_handed_over_once_to_its_owner_with_the_score(runs, demo):
    handoffs = [m for name in ("A", "B", "C") for m in runs[name][1]
                if m["step"] == "mql_handoff"]
    owner = owners(handoffs)
    hot = leads_of(demo, "hot")
    from_a = {owner[m["ledger_id"]][1]: m for m in handoffs if m in runs["A"][1]}
    assert sorted(from_a) == hot
    for contact, message in from_a.items():
        assert message["recipient"] == owner_email(demo, contact)
        assert message["recipient"] in ACCOUNT_MANAGERS  # leads have no CRM owner yet
        assert f"Score {runs['scores_after_A'][contact]:.1f}" in message["text"], contact


def test_sales_leads_are_out_of_marketings_hands(runs, demo):
    theirs = leads_of(demo, *SALES_PERSONAS)
    assert execute("select contact_id, step from nurture.message_ledger"
                   " where program = 'nurture' and contact_id = any(%s)", (theirs,)) == []
    assert {c for c, _ in sent_keys(every_message(runs))}.isdisjoint(theirs)


def test_the_holdout_group_gets_nothing_and_stays_the_same(runs, demo):
    held = held_out(demo)
    assert held, "the demo should hold someone out"
    rows = execute("select contact_id, step, dag_run_id from nurture.message_ledger"
                   " where program = 'nurture' and reason = 'held_out'")
    assert sorted(c for c, _, _ in rows) == sorted(held)  # one row each: content_1
    assert {step for _, step, _ in rows} == {"content_1"}
    assert {run for _, _, run in rows} == {runs["A"][0].run_id}  # decided once
    assert by_step(runs["A"][0])["content_1"]["not_sent"].get("held_out") == len(held)
    for name in ("B", "C"):
        assert "held_out" not in by_step(runs[name][0])["content_1"]["not_sent"], name
    assert {c for c, _ in sent_keys(every_message(runs))}.isdisjoint(held)


def test_a_lead_crossing_between_runs_is_handed_over_and_gets_no_more_content(
        runs, demo, chosen):
    crossing = chosen["crossing"]
    everything = sent_keys(every_message(runs))
    assert everything[(crossing, "mql_handoff")] == 1
    assert (crossing, "mql_handoff") in sent_keys(runs["C"][1])
    assert [step for contact, step in sent_keys(runs["C"][1])
            if contact == crossing] == ["mql_handoff"]
    handoff = next(m for m in runs["C"][1] if m["step"] == "mql_handoff")
    assert handoff["recipient"] == owner_email(demo, crossing)


def test_only_the_unworked_lead_past_its_sla_is_escalated(runs, chosen):
    escalations = [m for m in every_message(runs) if m["step"] == "sla_escalation"]
    assert [m["recipient"] for m in escalations] == [SALES_MANAGER]
    assert sent_keys(escalations) == Counter({(chosen["unworked"], "sla_escalation"): 1})
    assert escalations[0] in runs["C"][1]
    assert chosen["unworked"] in escalations[0]["text"]


def test_run_c_sends_the_handoff_and_the_escalation_only(runs, chosen):
    assert sent_keys(runs["C"][1]) == Counter({(chosen["crossing"], "mql_handoff"): 1,
                                               (chosen["unworked"], "sla_escalation"): 1})
    assert runs["C"][0].summary["sent"] == 2


def test_a_freshly_recycled_lead_waits_out_the_cooldown(runs, chosen):
    recycled_now = chosen["recycled_now"]
    assert ledger_rows(recycled_now) == runs["recycled_now_before_C"]
    assert [e for _, e, _, _, _ in ledger_rows(recycled_now)] == [
        f"nurture:{recycled_now}:first"]  # the first cycle's piece, nothing of the new one
    assert recycled_now not in {c for c, _ in sent_keys(runs["C"][1])}


def test_a_lead_recycled_three_weeks_ago_is_back_in_the_track(runs, demo):
    [recycled] = leads_of(demo, "recycled")
    feedback_id = next(r[0] for r in demo.tables["sales_feedback"]
                       if r[1] == recycled and r[2] == "recycled")
    expected_run = "B" if recycled in invited(demo) else "A"
    if recycled in held_out(demo):
        assert ledger_rows(recycled)[0][:4] == (
            "content_1", f"nurture:{recycled}:{feedback_id}", "skipped", "held_out")
    else:
        assert (recycled, "content_1") in sent_keys(runs[expected_run][1])
        assert ("content_1", f"nurture:{recycled}:{feedback_id}", "sent") in [
            row[:3] for row in ledger_rows(recycled)]


def test_nothing_is_sent_twice(runs):
    everything = every_message(runs)
    owner = owners(everything)
    keys = Counter((*owner[m["ledger_id"]], m["step"]) for m in everything)
    assert [key for key, count in keys.items() if count > 1] == []
    # to a contact (not a colleague, who hears about many leads): once per address and step
    to_contacts = Counter((m["recipient"], m["step"]) for m in everything
                          if m["step"] in CONTENT or owner[m["ledger_id"]][0] == "webinar")
    assert [key for key, count in to_contacts.items() if count > 1] == []
