"""The incremental models, built after a day of new rows, equal a full refresh row for row.

The day brings what a real one does: new page visits, form fills and attendance, a late
event (it happened weeks ago, it is loaded today), an open earlier than the message's
recorded first open, provider events for a month-old message, a ledger row that changes
state, a new one, a message erased from the ledger with its events (as a reset does),
activations: a contact's first, and one earlier than a contact's recorded first; and for
the per-contact models, an unsubscribe, a CRM opt-out, a CRM export with a new phone number
that then texts STOP, sales feedback and a sign-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from psycopg2.extras import execute_values

from nurture import ledger, seed, settings, warehouse
from nurture.webhooks.storage import PROVIDER_EVENT_TABLES

DAY = timedelta(days=1)
# model -> its unique key
INCREMENTAL = {"intermediate.int_lead_engagement_events": "engagement_event_id",
               "intermediate.int_contact_activations": "contact_id",
               "marts.message_sends": "ledger_id",
               # per contact (changed_contacts.sql)
               "marts.contacts": "contact_id",
               "marts.consent_history": "contact_id",
               "intermediate.int_lead_stage_evidence": "contact_id",
               "marts.onboarding_audience": "contact_id",
               "marts.contacts_quarantined": "contact_id",
               "intermediate.int_program_conversions": "contact_id",
               "intermediate.int_lead_score_components": "contact_id",
               "intermediate.int_nurture_cycles": "contact_id",
               "marts.lifecycle_funnel": "contact_id",
               "marts.survey_audience": "contact_id",
               "intermediate.int_webinar_invitees": "contact_id",
               "intermediate.int_webinar_audience_members": "contact_id",
               "intermediate.int_message_conversions": "ledger_id",
               "intermediate.int_program_contact_outcomes": "contact_id",
               # by day (message_outcomes.sql)
               "intermediate.int_message_outcomes_by_day": "message_date, program, step"}
SELECT = ["+int_lead_engagement_events", "+int_contact_activations", "+message_sends",
          "+contacts", "+consent_history", "+int_lead_stage_evidence", "+onboarding_audience",
          "+contacts_quarantined", "+int_program_conversions", "+int_lead_score_components",
          "+int_nurture_cycles", "+lifecycle_funnel", "+survey_audience",
          "+int_webinar_audience_members", "+int_program_contact_outcomes",
          "+int_message_outcomes_by_day"]
NEW_PHONE = "+358409990001"


def dbt_build(*args: str, select=SELECT) -> dict[str, int]:
    """Build the incremental models and their parents; rows each model's statement wrote."""
    result = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "build", "--quiet", "-s", *select,
         "--indirect-selection", "cautious", *args],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads((settings.DBT_PROJECT_DIR / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[-1]: r["adapter_response"].get("rows_affected")
            for r in run["results"] if r["unique_id"].startswith("model.")}


def table(relation: str) -> list[tuple]:
    """The rows, floats to 12 significant digits: a sum of engagement points in double
    precision depends on the order it adds them, which differs between the two builds.
    Without `built_at`, the time of the build that wrote a row."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(f"select * from {relation} as t order by {INCREMENTAL[relation]}, t::text")
        kept = [i for i, column in enumerate(cur.description) if column.name != "built_at"]
        return [tuple(float(f"{found[i]:.12g}") if isinstance(found[i], float) else found[i]
                      for i in kept)
                for found in cur.fetchall()]


def row(relation: str, key: str) -> dict | None:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(f"select * from {relation} where {INCREMENTAL[relation]}::text = %s", (key,))
        found = cur.fetchone()
        return dict(zip([c.name for c in cur.description], found, strict=True)) if found else None


class Day:
    """Ledger rows and provider events, written as the dispatcher and receiver would."""

    def __init__(self, cur, now):
        self.cur, self.now = cur, now

    def message(self, contact_id: str, step: str, *, channel="email", state="sent",
                at=None) -> str:
        at = at or self.now
        ledger_id = str(uuid.uuid4())
        self.cur.execute(
            "insert into nurture.message_ledger (ledger_id, program, step, contact_id,"
            " enrollment_id, channel, state, provider_message_id, due_at, planned_at, sent_at,"
            " updated_at) values (%s, 'onboarding', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (ledger_id, step, contact_id, f"onboarding:{contact_id}", channel, state,
             f"SM{ledger_id.replace('-', '')}" if channel == "sms" else f"sg-{ledger_id}",
             at, at, at if state == "sent" else None, at))
        return ledger_id

    def email_event(self, ledger_id: str, event: str, at) -> str:
        event_id = uuid.uuid4().hex
        self.cur.execute(
            "insert into raw.sendgrid_events (sg_event_id, event, payload) values (%s, %s, %s)",
            (event_id, event, json.dumps({"event": event, "ledger_id": ledger_id,
                                          "sg_event_id": event_id,
                                          "timestamp": int(at.timestamp())})))
        return event_id

    def sms_status(self, ledger_id: str, status: str) -> None:
        sid = f"SM{ledger_id.replace('-', '')}"
        self.cur.execute(
            "insert into raw.twilio_status_callbacks (message_sid, message_status, payload)"
            " values (%s, %s, %s)", (sid, status, json.dumps({"MessageSid": sid,
                                                              "MessageStatus": status})))


@pytest.fixture(scope="module")
def built(warehouse_url):
    """A full build on the demo data and a month of sends; then one more day, built
    incrementally; then, for comparison, a full refresh."""
    data = seed.build()
    now = data.loaded_at
    contacts = sorted({r[0] for r in data.tables["crm_contacts"]})[:10]
    with warehouse.connect() as conn, conn.cursor() as cur:
        seed.load(conn, data)
        ledger.ensure_schema(conn)
        cur.execute("truncate nurture.message_ledger, " + ", ".join(PROVIDER_EVENT_TABLES))
        month = Day(cur, now - 30 * DAY)
        ids = {
            "opened": month.message(contacts[0], "welcome"),
            "old": month.message(contacts[1], "welcome"),
            "sms": month.message(contacts[3], "check_in", channel="sms"),
            "planned": month.message(contacts[4], "setup_tips", state="planned"),
            "erased": month.message(contacts[5], "welcome"),
        }
        for name in ("opened", "old", "erased"):
            month.email_event(ids[name], "delivered", now - 30 * DAY)
        for contact_id in contacts:  # messages the day leaves alone
            month.email_event(month.message(contact_id, "reminder"), "delivered", now - 29 * DAY)
        month.email_event(ids["opened"], "open", now - 20 * DAY)
        month.email_event(ids["erased"], "click", now - 25 * DAY)
        month.sms_status(ids["sms"], "sent")
        # each loaded minutes after it happened, all of it before the day the incremental
        # build is about
        for relation, loaded, happened in (
                ("raw.sendgrid_events", "received_at",
                 "to_timestamp((payload ->> 'timestamp')::bigint)"),
                ("raw.twilio_status_callbacks", "received_at", "now() - interval '29 days'"),
                ("raw.page_visits", "_loaded_at", "visited_at"),
                ("raw.events", "_loaded_at", "occurred_at"),
                ("raw.form_fills", "_loaded_at", "filled_at"),
                ("raw.webinar_attendance", "_loaded_at", "joined_at")):
            cur.execute(f"update {relation} set {loaded} = least({happened}, %s)"
                        " + interval '5 minutes'", (now - 2 * DAY,))
        # the CRM and sign-ups: a sync two hours ago, before the lookback of the day's rows
        for relation in ("crm_contacts", "consents", "crm_users", "signups", "lead_profiles",
                         "sales_feedback"):
            cur.execute(f"update raw.{relation} set _loaded_at = %s", (now - 2 * DAY / 24,))
    dbt_build("--full-refresh")

    visitor = data.tables["page_visits"][0][1]
    with warehouse.connect() as conn, conn.cursor() as cur:
        day = Day(cur, now)
        execute_values(cur, "insert into raw.page_visits values %s", [
            ("inc-visit-1", visitor, "https://nurture.example/pricing", now - DAY / 2, now),
            ("inc-visit-late", visitor, "https://nurture.example/blog", now - 40 * DAY, now)])
        cur.execute("insert into raw.form_fills values ('inc-fill-1', %s, 'demo_request', %s,"
                    " %s)", (visitor, now - DAY / 3, now))
        attended = data.tables["webinar_attendance"][0]
        # the same contact joined the same webinar earlier than recorded (a late export)
        cur.execute("insert into raw.webinar_attendance values (%s, %s, %s, 5, %s)",
                    (attended[0], attended[1], attended[2] - timedelta(minutes=10), now))
        activated = sorted((r[1], r[3]) for r in data.tables["events"]
                           if r[2].lower() == "activated" and r[1])
        never = sorted({r[0] for r in data.tables["crm_contacts"]} - {c for c, _ in activated})
        ids["activated"], ids["never_activated"] = activated[0][0], never[0]
        execute_values(cur, "insert into raw.events values %s", [
            ("inc-activation-earlier", ids["activated"], "activated",
             activated[0][1] - 3 * DAY, now),
            ("inc-activation-first", ids["never_activated"], "Activated", now - DAY / 4, now)])
        day.email_event(ids["opened"], "open", now - 21 * DAY)  # earlier than the first
        day.email_event(ids["opened"], "open", now - DAY)  # a re-open: no new engagement
        day.email_event(ids["old"], "click", now - DAY)  # a month-old message
        day.email_event(ids["old"], "bounce", now - DAY)
        day.sms_status(ids["sms"], "delivered")
        cur.execute("update nurture.message_ledger set state = 'sent', sent_at = now(),"
                    " updated_at = now() where ledger_id = %s", (ids["planned"],))
        ids["new"] = day.message(contacts[0], "setup_tips")
        # consent, the CRM, sales and sign-ups
        signed_up = {r[1] for r in data.tables["signups"]}
        ids["signup"] = next(c for c in sorted({r[0] for r in data.tables["crm_contacts"]})
                             if c not in signed_up)
        cur.execute("insert into raw.unsubscribe_requests values"
                    " ('inc-unsubscribe', %s, 'email', 'link', %s, '{}')", (contacts[6], now))
        cur.execute("insert into raw.consents values ('inc-opt-out', %s, 'email', 'opted_out',"
                    " 'crm', %s, %s)", (contacts[8], now, now))
        cur.execute("insert into raw.crm_contacts select contact_id, email, %s, first_name,"
                    " last_name, time_zone, locale, lifecycle_stage, lifecycle_stage_changed_at,"
                    " created_at, %s, %s, owner_id from raw.crm_contacts where contact_id = %s"
                    " limit 1", (NEW_PHONE, now, now, contacts[7]))
        cur.execute("insert into raw.twilio_inbound_messages (message_sid, received_at, payload)"
                    " values ('SMinc-stop', %s, %s)",
                    (now, json.dumps({"From": NEW_PHONE, "Body": "STOP"})))
        cur.execute("insert into raw.sales_feedback values ('inc-feedback', %s, 'accepted',"
                    " null, %s, null, %s)", (contacts[9], now - DAY / 3, now))
        cur.execute("insert into raw.signups values ('inc-signup', %s, 'free', %s, %s)",
                    (ids["signup"], now - DAY / 3, now))
        cur.execute("delete from nurture.message_ledger where ledger_id = %s", (ids["erased"],))
        cur.execute("delete from raw.sendgrid_events where payload ->> 'ledger_id' = %s",
                    (ids["erased"],))
    incremental_build = dbt_build()
    incremental = {relation: table(relation) for relation in INCREMENTAL}
    looked_up = {
        "first_open": row("intermediate.int_lead_engagement_events",
                          f"email_open:{ids['opened']}"),
        "old_click": row("intermediate.int_lead_engagement_events", f"email_click:{ids['old']}"),
        "erased_click": row("intermediate.int_lead_engagement_events",
                            f"email_click:{ids['erased']}"),
        "late_visit": row("intermediate.int_lead_engagement_events", "page_visit:inc-visit-late"),
        "earlier_activation": row("intermediate.int_contact_activations", ids["activated"]),
        "earlier_activation_at": activated[0][1] - 3 * DAY,
        "first_activation": row("intermediate.int_contact_activations",
                                ids["never_activated"]),
        "old": row("marts.message_sends", ids["old"]),
        "sms": row("marts.message_sends", ids["sms"]),
        "planned": row("marts.message_sends", ids["planned"]),
        "new": row("marts.message_sends", ids["new"]),
        "erased": row("marts.message_sends", ids["erased"]),
        "unsubscribed": row("marts.contacts", contacts[6]),
        "new_phone": row("marts.contacts", contacts[7]),
        "opted_out": row("marts.contacts", contacts[8]),
        "accepted": row("intermediate.int_lead_stage_evidence", contacts[9]),
        "signed_up": row("marts.onboarding_audience", ids["signup"]),
        "superseded": row("marts.contacts_quarantined", contacts[7]),
    }
    dbt_build("--full-refresh")
    yield {"now": now, "ids": ids, "incremental": incremental, "looked_up": looked_up,
           "incremental_build": incremental_build}
    with warehouse.connect() as conn, conn.cursor() as cur:  # later modules start clean
        cur.execute("truncate nurture.message_ledger, " + ", ".join(PROVIDER_EVENT_TABLES))


@pytest.mark.parametrize("relation", list(INCREMENTAL))
def test_an_incremental_build_equals_a_full_refresh_row_for_row(built, relation):
    assert built["incremental"][relation] == table(relation)


# The day erased a ledger row, which may have held a consent change (a bounce, Twilio's
# 21610) or carried a survey, of a contact no longer known, and its SendGrid events (the
# engagement the score sums): these redo every contact then.
REDONE_AFTER_LEDGER_ERASURE = {"marts.contacts", "marts.consent_history",
                               "marts.onboarding_audience",
                               "intermediate.int_program_conversions",
                               "intermediate.int_lead_score_components",
                               "intermediate.int_nurture_cycles", "marts.survey_audience",
                               "intermediate.int_webinar_invitees",
                               "intermediate.int_webinar_audience_members",
                               "intermediate.int_message_conversions",
                               "intermediate.int_program_contact_outcomes",
                               "intermediate.int_message_outcomes_by_day"}


def test_the_incremental_build_wrote_only_what_the_day_touched(built):
    """Not a full rebuild in disguise: fewer rows written than the tables hold."""
    for relation in INCREMENTAL.keys() - REDONE_AFTER_LEDGER_ERASURE:
        written = built["incremental_build"][relation.split(".")[1]]
        assert 0 < written < len(built["incremental"][relation]), relation


def test_a_day_without_erasures_redoes_only_the_contacts_it_touched(built):
    """An unsubscribe and an activation: the contact marts write those two contacts' rows
    (consent_history: all of the unsubscribed contact's changes), and equal a full refresh."""
    marts = sorted(REDONE_AFTER_LEDGER_ERASURE)
    select = ["+" + m.split(".")[1] for m in marts]
    # no lookback: the rows the fixture's day loaded a minute ago are read again otherwise
    exact = ("--vars", "{incremental_lookback: 0 seconds}")
    unsubscribed, activated = "C00012", built["ids"]["signup"]
    dbt_build(*exact, select=select)  # marks after the erasure
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("insert into raw.unsubscribe_requests values"
                    " ('inc-unsubscribe-2', %s, 'email', 'link', now(), '{}')", (unsubscribed,))
        cur.execute("insert into raw.events values ('inc-activation-2', %s, 'activated', now(),"
                    " now())", (activated,))
        cur.execute("select count(*) from intermediate.int_consent_events where contact_id = %s",
                    (unsubscribed,))
        changes = cur.fetchone()[0]
    written = dbt_build(*exact, select=select)
    enrolled = [c for c in (unsubscribed, activated) if row("marts.onboarding_audience", c)]
    assert (written["contacts"], written["onboarding_audience"]) == (2, len(enrolled))
    with warehouse.connect() as conn, conn.cursor() as cur:
        # an unsubscribe is no conversion's input: the activated contact's rows only
        cur.execute("select count(*) from intermediate.int_program_conversions"
                    " where contact_id = %s", (activated,))
        assert written["int_program_conversions"] == cur.fetchone()[0] > 0
    assert written["consent_history"] == changes
    incremental = {relation: table(relation) for relation in marts}
    dbt_build("--full-refresh", select=[m.split(".")[1] for m in marts])
    assert incremental == {relation: table(relation) for relation in marts}
    assert not row("marts.contacts", unsubscribed)["has_email_consent"]
    assert row("marts.onboarding_audience", activated)["is_activated"]


def test_contacts_that_left_a_table_are_deleted_from_it(built):
    """A build deletes the rows a contact no longer has, not only replaces those it still
    has: a lead the CRM now calls a customer leaves the score components and the nurture
    cycles, a lead sales accepted leaves the cycles; the tables equal a full refresh."""
    exact = ("--vars", "{incremental_lookback: 0 seconds}")
    tables = ["intermediate.int_lead_score_components", "intermediate.int_nurture_cycles",
              "marts.lifecycle_funnel", "marts.survey_audience"]
    select = ["+" + t.split(".")[1] for t in tables]
    dbt_build(*exact, select=select)  # marks after the fixture's day
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select contact_id from intermediate.int_nurture_cycles"
                    " order by contact_id limit 2")
        customer, accepted = (r[0] for r in cur.fetchall())
        cur.execute("insert into raw.crm_contacts select contact_id, email, phone, first_name,"
                    " last_name, time_zone, locale, 'customer', now(), created_at, now(),"
                    " now(), owner_id from raw.crm_contacts where contact_id = %s"
                    " order by updated_at desc limit 1", (customer,))
        cur.execute("insert into raw.sales_feedback values ('inc-accepted', %s, 'accepted',"
                    " null, now(), 'sales@nurture.example', now())", (accepted,))
    dbt_build(*exact, select=select)
    assert row("intermediate.int_lead_score_components", customer) is None
    assert row("intermediate.int_lead_score_components", accepted) is not None
    assert row("intermediate.int_nurture_cycles", customer) is None
    assert row("intermediate.int_nurture_cycles", accepted) is None
    assert row("marts.lifecycle_funnel", accepted)["current_stage"] == "sales_accepted"
    incremental = {t: table(t) for t in tables}
    # with the views over the components: replacing a table drops them (`cascade`)
    dbt_build("--full-refresh",
              select=[t.split(".")[1] for t in tables] + ["lead_scores", "nurture_audience"])
    assert incremental == {t: table(t) for t in tables}


def test_a_change_of_the_scored_stages_redoes_every_lead(built):
    """No row was loaded, but the vars say subscribers are scored now: the score components
    and the nurture cycles take them in, as a full refresh with the same vars would; back
    to the default, they leave again."""
    tables = ["intermediate.int_lead_score_components", "intermediate.int_nurture_cycles"]
    select = ["+int_nurture_cycles", "lead_scores", "nurture_audience"]
    wider = ("--vars", "{lead_scoring_stages: [lead, mql, subscriber]}")
    dbt_build(select=select)
    before = {t: table(t) for t in tables}
    dbt_build(*wider, select=select)
    widened = {t: table(t) for t in tables}
    assert all(len(widened[t]) > len(before[t]) for t in tables)
    dbt_build(*wider, "--full-refresh", select=select)
    assert widened == {t: table(t) for t in tables}
    dbt_build(select=select)
    assert before == {t: table(t) for t in tables}


def test_the_day_reached_the_incremental_tables(built):
    """The comparison is not between two stale tables: each change of the day is there."""
    now, seen = built["now"], built["looked_up"]
    assert seen["first_open"]["occurred_at"] == (now - 21 * DAY).replace(microsecond=0)
    assert seen["old_click"] is not None and seen["late_visit"] is not None
    assert seen["erased_click"] is None and seen["erased"] is None
    assert (seen["old"]["was_clicked"], seen["old"]["was_bounced"],
            seen["old"]["was_delivered"]) == (True, True, True)
    assert seen["sms"]["was_delivered"]
    assert seen["planned"]["was_sent"] and seen["new"] is not None
    assert seen["first_activation"]["activated_at"] == now - DAY / 4
    assert seen["earlier_activation"]["activated_at"] == seen["earlier_activation_at"]
    assert not seen["unsubscribed"]["has_email_consent"]
    assert not seen["opted_out"]["has_email_consent"]
    assert (seen["new_phone"]["phone"], seen["new_phone"]["has_sms_consent"]) == (NEW_PHONE,
                                                                                  False)
    assert seen["accepted"]["sales_accepted_at"] == now - DAY / 3
    assert seen["signed_up"]["enrollment_id"] == f"onboarding:{seen['signed_up']['contact_id']}"
    assert seen["superseded"]["reason"] == "duplicate_contact"  # the export before the new one


ACTIVATIONS_FROM_SOURCE = """
    select contact_id, min(occurred_at), max(_loaded_at) from raw.events
    where lower(event_name) = 'activated' and contact_id is not null
    group by contact_id order by contact_id"""


def test_erased_source_rows_leave_the_incremental_tables_as_a_full_refresh_would(built):
    """Erasing rows (the data team's doing, not a load) leaves no new row for a build to
    read: the build sees that rows left the source, and redoes or drops what they made."""
    contact = built["ids"]["never_activated"]
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("delete from raw.events where event_id = 'inc-activation-first'")
        cur.execute("delete from raw.page_visits where visit_id = 'inc-visit-1'")
    dbt_build(select=["int_contact_activations", "int_lead_engagement_events"])
    assert row("intermediate.int_contact_activations", contact) is None
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(ACTIVATIONS_FROM_SOURCE)
        expected = cur.fetchall()
        cur.execute("select count(*) from intermediate.int_lead_engagement_events"
                    " where source_event_id = 'inc-visit-1'")
        assert cur.fetchone() == (0,)
    assert table("intermediate.int_contact_activations") == expected


def test_an_erased_consent_leaves_the_contact_marts_as_a_full_refresh_would(built):
    """An erased consent row names no contact to redo: every contact is done again."""
    marts = ("marts.contacts", "marts.consent_history")
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("delete from raw.consents where consent_id = 'inc-opt-out'")
    dbt_build(select=["contacts", "consent_history"])
    incremental = {relation: table(relation) for relation in marts}
    dbt_build("--full-refresh", select=["contacts", "consent_history"])
    assert incremental == {relation: table(relation) for relation in marts}
    assert not [r for r in incremental["marts.consent_history"]
                if r[3] == "crm_crm" and r[4] == built["now"]]


DUPLICATE_URL = "https://nurture.example/duplicate"  # marks the rows the test below adds


def failing_rows(select: list[str], tests: list[str], *args: str) -> dict[str, int]:
    """`dbt build -s <select>`; the failing rows of each of `tests`, by name."""
    subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "build", "--quiet", "-s", *select, *args],
        capture_output=True, text=True)
    run = json.loads((settings.DBT_PROJECT_DIR / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[2]: r["failures"] for r in run["results"]
            if r["unique_id"].split(".")[2] in tests}


def leave_marks() -> None:
    """The marks an earlier build leaves (int_source_load_watermarks)."""
    marked = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "build", "--quiet", "-s",
         "int_source_load_watermarks"], capture_output=True, text=True)
    assert marked.returncode == 0, marked.stdout + marked.stderr


def test_raw_ids_are_checked_since_the_last_build_and_in_full_on_a_full_refresh(built):
    """unique_since_last_build: an incremental build catches a newly loaded row repeating
    an old id; it reads no older rows (what makes it cheap), and a full refresh reads them
    all, so it catches two old rows sharing an id."""
    now, failing = built["now"], "source_unique_since_last_build_web_page_visits_visit_id"

    def source_test_failures(*args: str) -> dict[str, int]:
        return failing_rows(["source:web.page_visits"], [failing], *args)

    leave_marks()
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select visit_id, contact_id, visited_at from raw.page_visits"
                    " where _loaded_at < %s order by visit_id limit 1", (now - DAY,))
        visit_id, contact_id, visited_at = cur.fetchone()
        cur.execute("insert into raw.page_visits values (%s, %s, %s, %s, %s)",
                    (visit_id, contact_id, DUPLICATE_URL, visited_at, now + DAY))
    try:
        assert source_test_failures() == {failing: 1}
        # a plain `dbt run` (the tests did not run) leaves the marks where they were
        subprocess.run([sys.executable, "-m", "nurture.cli", "dbt", "run", "--quiet", "-s",
                        "int_source_load_watermarks"], capture_output=True, text=True,
                       check=True)
        assert source_test_failures() == {failing: 1}
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute("update raw.page_visits set _loaded_at = %s where url = %s",
                        (now - 3 * DAY, DUPLICATE_URL))
        assert source_test_failures() == {failing: 0}
        assert source_test_failures("--full-refresh") == {failing: 1}
    finally:
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute("delete from raw.page_visits where url = %s", (DUPLICATE_URL,))
    assert source_test_failures("--full-refresh") == {failing: 0}


UNKNOWN_EVENT = "test-unknown-event"  # the SendGrid event the test below adds
FILTERED_TESTS = ["source_not_null_web_page_visits_contact_id", "sendgrid_event_names_are_known"]


def filtered_test_failures(*args: str) -> dict[str, int]:
    """The tests whose `where` reads only rows loaded since the last build (`__last_build__`)."""
    return failing_rows(["source:web.page_visits", "source:sendgrid.sendgrid_events"],
                         FILTERED_TESTS, *args)


def test_big_raw_tables_are_tested_since_the_last_build_and_in_full_on_a_full_refresh(built):
    """A visit with no contact and an event SendGrid never sends: an incremental build's
    tests catch them when loaded since the last build, pass them when loaded before (the
    build that read them checked them), and a full refresh reads every row."""
    now = built["now"]
    leave_marks()
    failing = dict.fromkeys(FILTERED_TESTS, 1)
    passing = dict.fromkeys(FILTERED_TESTS, 0)

    def load_at(at) -> None:
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute("update raw.page_visits set _loaded_at = %s where url = %s",
                        (at, DUPLICATE_URL))
            cur.execute("update raw.sendgrid_events set received_at = %s where sg_event_id = %s",
                        (at, UNKNOWN_EVENT))

    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("insert into raw.page_visits values (%s, null, %s, %s, %s)",
                    (f"v-{uuid.uuid4()}", DUPLICATE_URL, now, now + DAY))
        cur.execute("insert into raw.sendgrid_events (sg_event_id, event, payload, received_at)"
                    " values (%s, 'Mystery', '{}', %s)", (UNKNOWN_EVENT, now + DAY))
    try:
        assert filtered_test_failures() == failing
        load_at(now - 3 * DAY)
        assert filtered_test_failures() == passing
        assert filtered_test_failures("--full-refresh") == failing
    finally:
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute("delete from raw.page_visits where url = %s", (DUPLICATE_URL,))
            cur.execute("delete from raw.sendgrid_events where sg_event_id = %s", (UNKNOWN_EVENT,))
    assert filtered_test_failures("--full-refresh") == passing


def test_no_model_keeps_the_same_index_twice(built):
    """A contract's primary key already indexes its columns: an `indexes` config repeating
    them is written on every insert and read by nothing."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "select indrelid::regclass::text, array_agg(indexrelid::regclass::text)"
            " from pg_index join pg_class on pg_class.oid = indrelid"
            " join pg_namespace on pg_namespace.oid = relnamespace"
            " where nspname in ('intermediate', 'marts')"
            " group by indrelid, indkey::text, indclass::text,"
            " coalesce(pg_get_expr(indexprs, indrelid), ''),"
            " coalesce(pg_get_expr(indpred, indrelid), '')"
            " having count(*) > 1")
        assert cur.fetchall() == []


def test_message_outcomes_count_again_the_days_a_message_left_or_joined(built):
    """A deferred message decided again moves to today, a planned one sent today moves to
    its sent day: the days they left are counted again too, as a full refresh counts them."""
    exact = ("--vars", "{incremental_lookback: 0 seconds}")
    select = ["+int_message_outcomes_by_day"]
    contact, now = built["ids"]["signup"], built["now"]
    with warehouse.connect() as conn, conn.cursor() as cur:
        day = Day(cur, now)
        deferred = day.message(contact, "reminder", state="deferred", at=now - 3 * DAY)
        planned = day.message(contact, "check_in", state="planned", at=now - 2 * DAY)
        # written now, for days past
        cur.execute("update nurture.message_ledger set updated_at = now()"
                    " where ledger_id in (%s, %s)", (deferred, planned))
    dbt_build(*exact, select=select)
    counted = table("intermediate.int_message_outcomes_by_day")
    left = (now - 3 * DAY).date()
    assert [r for r in counted if r[4] == left and r[11] > 0]  # deferred, on its day
    with warehouse.connect() as conn, conn.cursor() as cur:
        # as ledger.record decides a deferred row again, and ledger.settle sends one
        cur.execute("update nurture.message_ledger set state = 'planned', planned_at = now(),"
                    " updated_at = now() where ledger_id = %s", (deferred,))
        cur.execute("update nurture.message_ledger set state = 'sent', sent_at = now(),"
                    " updated_at = now() where ledger_id = %s", (planned,))
    written = dbt_build(*exact, select=select)
    incremental = table("intermediate.int_message_outcomes_by_day")
    assert 0 < written["int_message_outcomes_by_day"] < len(incremental)
    assert not [r for r in incremental if r[4] == left and r[11] > 0]
    dbt_build("--full-refresh", select=select)
    assert incremental == table("intermediate.int_message_outcomes_by_day")
