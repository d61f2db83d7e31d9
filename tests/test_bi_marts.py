"""The BI marts checked against an independent reckoning: the demo dataset plus a history of
programs having run (ledger rows, SendGrid events, Twilio callbacks, activations, survey
answers, written as the real components would), built by `nurture dbt build`, and every
figure of the funnel and program-performance marts recomputed with pandas from the raw
tables and the ledger."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from datetime import timedelta

import pandas as pd
import pytest
from psycopg2.extras import execute_values

from nurture import seed, settings, warehouse
from nurture.policies import in_holdout
from nurture.webhooks.storage import PROVIDER_EVENT_TABLES

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
HOLDOUT = 0.2  # a program may hold out more than the default 5%: groups big enough to see
BI_MARTS = ("contacts", "consent_history", "message_sends", "lifecycle_funnel",
            "funnel_daily_snapshot", "survey_responses", "nps_by_month", "program_performance",
            "program_holdout_comparison")
CLEAR_SENDS = ("truncate nurture.message_ledger, raw.survey_responses, "
               + ", ".join(PROVIDER_EVENT_TABLES))
LEDGER_COLUMNS = ("ledger_id", "program", "step", "contact_id", "enrollment_id", "channel",
                  "state", "reason", "template_version", "provider_message_id", "due_at",
                  "planned_at", "sent_at")


class History:
    """What programs did with the demo contacts, as the ledger and providers record it."""

    def __init__(self, now):
        self.now = now
        self.ledger: list[tuple] = []
        self.sendgrid: list[tuple] = []
        self.twilio: list[tuple] = []
        self.activations: list[tuple] = []
        self.answers: list[tuple] = []

    def message(self, program, step, contact_id, enrollment_id, *, due, channel="email",
                version=None, state="sent", reason=None, transactional=False):
        """One ledger row; a marketing message to a held-out contact is recorded held_out."""
        if not transactional and state == "sent" and in_holdout(program, contact_id, HOLDOUT):
            state, reason, version = "skipped", "held_out", None
        ledger_id = str(uuid.uuid4())
        sent_at = due + HOUR / 2 if state == "sent" else None
        provider_id = (f"SM{uuid.uuid4().hex}" if channel == "sms" else f"sg-{uuid.uuid4().hex}"
                       ) if state in ("sent", "unknown") else None
        self.ledger.append((ledger_id, program, step, contact_id, enrollment_id, channel, state,
                            reason, version if state in ("sent", "unknown") else None,
                            provider_id, due, due + HOUR / 12, sent_at))
        return ledger_id, provider_id, sent_at

    def email_events(self, ledger_id, at, *events):
        for event in events:
            payload = {"event": event, "ledger_id": ledger_id, "timestamp": int(at.timestamp()),
                       "sg_event_id": uuid.uuid4().hex}
            self.sendgrid.append((payload["sg_event_id"], event, json.dumps(payload)))

    def sms_statuses(self, sid, *statuses):
        for status in statuses:
            self.twilio.append((sid, status, json.dumps({"MessageSid": sid,
                                                         "MessageStatus": status})))


def program_history(data) -> History:
    now, history = data.loaded_at, History(data.loaded_at)
    of = {}
    for cid, scenario in data.scenario_of.items():
        of.setdefault(scenario.name, []).append(cid)
    # Onboarding: welcome (a template edited five days ago: two versions), setup tips,
    # the SMS check-in; outcomes of every kind; some activate today, one before the welcome.
    for n, cid in enumerate(of["day_7"] + of["day_2"] + of["new_signup"]):
        entered = now - data.scenario_of[cid].signed_up
        welcome = "9b1e0c3a7d42" if entered < now - 5 * DAY else "4f7d2a9e1c05"
        steps = [("welcome", entered, welcome)]
        if entered <= now - 2 * DAY:
            steps.append(("setup_tips", entered + 2 * DAY, "c8a31f6b0e97"))
        for step, due, version in steps:
            state = {5: "failed", 6: "unknown"}.get(n, "sent") if step == "welcome" else "sent"
            ledger_id, _, sent_at = history.message("onboarding", step, cid, f"onboarding:{cid}",
                                                    due=due, version=version, state=state,
                                                    reason="template_error" if n == 5 else None)
            if sent_at is None:
                continue
            outcome = ("bounce",) if n % 17 == 3 else ("processed", "delivered")
            history.email_events(ledger_id, sent_at + HOUR, *outcome)
            if n % 2 == 0 and "delivered" in outcome:
                history.email_events(ledger_id, sent_at + 2 * HOUR, "open", "open")
            if n % 4 == 0 and "delivered" in outcome:
                history.email_events(ledger_id, sent_at + 2 * HOUR, "click")
            if n == 8:
                history.email_events(ledger_id, sent_at + 3 * HOUR, "unsubscribe")
        if data.scenario_of[cid].name == "day_7" and n % 5 == 4:  # the frequency cap is full
            history.message("onboarding", "check_in", cid, f"onboarding:{cid}", channel="sms",
                            due=now - 2 * HOUR, state="deferred", reason="frequency_cap_full")
        elif data.scenario_of[cid].name == "day_7":
            _, sid, _ = history.message("onboarding", "check_in", cid, f"onboarding:{cid}",
                                        channel="sms", due=now - 2 * HOUR, version="0d5e6f7a8b9c")
            if sid:
                history.sms_statuses(sid, "sent", "undelivered" if n % 9 == 2 else "delivered")
        if n % (7 if in_holdout("onboarding", cid, HOLDOUT) else 3) == 0:  # it helps a bit
            history.activations.append((f"BI-{cid}", cid, "activated", now - HOUR / 2, now))
    first = of["new_signup"][0]
    # activated between the plan and the welcome's send: no credit for the welcome
    history.activations.append((f"BI-{first}-early", first, "activated",
                                now - 105 * timedelta(minutes=1), now))
    for cid in of["no_email_consent"]:
        history.message("onboarding", "welcome", cid, f"onboarding:{cid}", due=now - 2 * HOUR,
                        state="skipped", reason="no_consent")
    for cid in of["new_signup_finnish"]:  # planned, not yet dispatched
        history.message("onboarding", "welcome", cid, f"onboarding:{cid}", due=now - HOUR,
                        state="planned", version=None)
    # Lead nurture: two pieces of content to the leads marketing owns; opens and clicks.
    for n, (cid, persona) in enumerate(data.lead_persona_of.items()):
        if persona.feedback:
            continue
        for step, ago, version in (("content_1", 10 * DAY, "a1b2c3d4e5f6"),
                                   ("content_2", 3 * DAY, "f6e5d4c3b2a1")):
            ledger_id, _, sent_at = history.message("nurture", step, cid, f"nurture:{cid}:first",
                                                    due=now - ago, version=version)
            if sent_at:
                history.email_events(ledger_id, sent_at + HOUR, "delivered",
                                     *(("open",) if n % 2 else ()),
                                     *(("click",) if step == "content_2" and n % 4 == 1 else ()))
    # Webinar W005 (ended three hours ago): invitations, confirmations (transactional, so
    # held-out registrants get them too), thank-yous to the five who attended.
    starts = now - 4 * HOUR
    registrants = [r[2] for r in data.tables["webinar_registrations"] if r[1] == "W005"]
    attended = {r[1] for r in data.tables["webinar_attendance"] if r[0] == "W005"}
    for cid in registrants + of["new_customer_from_crm"]:
        history.message("webinar", "invitation", cid, "webinar:W005", due=starts - 14 * DAY,
                        version="77aa88bb99cc")
        if cid in registrants:
            history.message("webinar", "confirmation", cid, "webinar:W005", due=starts - 3 * DAY,
                            version="1234abcd5678", transactional=True)
        if cid in attended:
            history.message("webinar", "thank_you", cid, "webinar:W005", due=now - 2 * HOUR,
                            version="feedc0ffee00")
    # Satisfaction survey: 30 days in, an email each; half of them answer.
    for n, cid in enumerate(of["long_ago"]):
        ledger_id, _, sent_at = history.message("satisfaction_survey", "survey_email", cid,
                                                f"survey:onboarding_30d:onboarding:{cid}",
                                                due=now - 3 * HOUR, version="5a5a5a5a5a5a")
        if sent_at and n % 2 == 0:
            history.answers.append((ledger_id, cid, "email", "onboarding_30d", 10 - n,
                                    sent_at, sent_at + HOUR, sent_at + HOUR))
    return history


@pytest.fixture(scope="module")
def built(warehouse_url):
    data = seed.build()
    load(data, program_history(data))
    result = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "build", "--quiet", "-s",
         "+program_performance", "+program_holdout_comparison", "+funnel_daily_snapshot",
         "--indirect-selection", "cautious"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield data
    with warehouse.connect() as conn, conn.cursor() as cur:  # later modules start clean
        cur.execute(CLEAR_SENDS)
        cur.execute("delete from raw.events where event_id like 'BI-%'")


def load(data, history: History) -> None:
    """The demo dataset and `history`: earlier modules' sends and answers are cleared."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        seed.load(conn, data)
        cur.execute(CLEAR_SENDS)
        # histories of this module's own (--full-refresh keeps incremental marts)
        cur.execute("drop table if exists marts.lead_score_history, marts.funnel_daily_snapshot")
        execute_values(cur, f"insert into nurture.message_ledger ({', '.join(LEDGER_COLUMNS)})"
                       " values %s", history.ledger)
        execute_values(cur, "insert into raw.sendgrid_events (sg_event_id, event, payload)"
                       " values %s", history.sendgrid)
        execute_values(cur, "insert into raw.twilio_status_callbacks (message_sid,"
                       " message_status, payload) values %s", history.twilio)
        execute_values(cur, "insert into raw.events values %s", history.activations)
        execute_values(cur, "insert into raw.survey_responses (survey_id, contact_id, channel,"
                       " trigger, score, issued_at, first_answered_at, answered_at) values %s",
                       history.answers)


def frame(sql: str) -> pd.DataFrame:
    """A query's rows; `*_at` columns as UTC timestamps."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        df = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    for column in df.columns:
        if column.endswith("_at"):
            df[column] = pd.to_datetime(df[column], utc=True)
    return df


def earliest(*columns: pd.Series) -> pd.Series:
    """SQL's least(): the earliest non-null per row."""
    return pd.concat(columns, axis=1).min(axis=1)


def conversions(ledger: pd.DataFrame) -> pd.DataFrame:
    """Each program's goal from the raw tables: program, contact_id, enrollment_id,
    converted_at (the first time)."""
    events = frame("select contact_id, event_name, occurred_at from raw.events")
    activated = events[events.event_name.str.lower() == "activated"]
    onboarding = activated.groupby("contact_id").occurred_at.min().reset_index(
        name="converted_at").assign(program="onboarding")
    onboarding["enrollment_id"] = "onboarding:" + onboarding.contact_id
    attendance = frame("select webinar_id, contact_id, joined_at from raw.webinar_attendance")
    webinar = attendance.groupby(["webinar_id", "contact_id"]).joined_at.min().reset_index(
        name="converted_at").assign(program="webinar")
    webinar["enrollment_id"] = "webinar:" + webinar.webinar_id
    answers = frame("select survey_id, first_answered_at from raw.survey_responses")
    surveyed = answers.merge(ledger.assign(survey_id=ledger.ledger_id.astype(str)), on="survey_id")
    survey = surveyed.groupby(["program", "contact_id", "enrollment_id"]
                              ).first_answered_at.min().reset_index(name="converted_at")
    # Lead scoring's history is state the warehouse keeps (scored at each build), not a
    # raw table: a crossing is an MQL row after a non-MQL one, in the cycle of the latest
    # recycling before it.
    history = frame("select contact_id, scored_at, is_mql from marts.lead_score_history"
                    ).sort_values(["contact_id", "scored_at"])
    was_mql = history.groupby("contact_id").is_mql.shift().astype("boolean").fillna(False)
    crossings = history[history.is_mql & ~was_mql]
    feedback = frame("select feedback_id, contact_id, lower(trim(outcome)) as outcome,"
                     " recorded_at from raw.sales_feedback")
    recycles = feedback[feedback.outcome == "recycled"]
    cycles = crossings.merge(recycles, on="contact_id", how="left")
    cycles = cycles[cycles.recorded_at.isna() | (cycles.recorded_at <= cycles.scored_at)]
    cycles = cycles.sort_values("recorded_at").groupby(["contact_id", "scored_at"]).last()
    cycles = cycles.reset_index()
    cycles["enrollment_id"] = ("nurture:" + cycles.contact_id + ":"
                               + cycles.feedback_id.fillna("first"))
    nurture = cycles.groupby(["contact_id", "enrollment_id"]).scored_at.min().reset_index(
        name="converted_at").assign(program="nurture")
    keys = ["program", "contact_id", "enrollment_id", "converted_at"]
    return pd.concat([onboarding[keys], webinar[keys], survey[keys], nurture[keys]])


def sends_with_outcomes() -> pd.DataFrame:
    ledger = frame("select * from nurture.message_ledger")
    sendgrid = frame("select event, payload from raw.sendgrid_events")
    sendgrid["ledger_id"] = sendgrid.payload.map(lambda p: p.get("ledger_id"))
    email = sendgrid.groupby("ledger_id").event.agg(set)
    twilio = frame("select message_sid, message_status from raw.twilio_status_callbacks")
    sms = twilio.groupby("message_sid").message_status.agg(set)
    events = pd.Series([email.get(str(m.ledger_id), set()) if m.channel == "email"
                        else sms.get(m.provider_message_id, set())
                        for m in ledger.itertuples()], index=ledger.index)
    sent = ledger.state == "sent"
    for flag, names in (("delivered", {"delivered"}), ("opened", {"open"}),
                        ("clicked", {"click"}), ("bounced", {"bounce", "undelivered", "failed"}),
                        ("unsubscribed", {"unsubscribe", "group_unsubscribe"})):
        ledger[flag] = sent & events.map(lambda seen, names=names: bool(seen & names))
    goals = conversions(ledger)
    ledger = ledger.merge(goals, on=["program", "contact_id", "enrollment_id"], how="left")
    ledger["converted"] = sent & (ledger.converted_at >= ledger.sent_at)
    return ledger


def test_program_performance_is_what_the_ledger_and_provider_events_say(built):
    sends = sends_with_outcomes()
    sends["variant"] = sends.template_version.fillna("none")
    sends["message_date"] = sends.sent_at.fillna(sends.planned_at).dt.date
    held_out = (sends.state == "skipped") & (sends.reason == "held_out")
    counts = sends.assign(
        planned=sends.state.isin(["planned", "sending", "sent", "failed", "unknown"]),
        sent=sends.state == "sent", failed=sends.state == "failed",
        outcome_unknown=sends.state == "unknown", held_out=held_out,
        skipped=(sends.state == "skipped") & ~held_out, deferred=sends.state == "deferred")
    keys = ["program", "step", "channel", "variant", "message_date"]
    measures = ["planned", "sent", "failed", "outcome_unknown", "held_out", "skipped",
                "deferred", "delivered", "opened", "clicked", "bounced", "unsubscribed",
                "converted"]
    expected = counts.groupby(keys)[measures].sum().reset_index()
    mart = frame(f"select {', '.join(keys + measures)} from marts.program_performance")
    assert _rows(mart, keys) == _rows(expected, keys)
    # the demo history exercises every column and both welcome versions
    assert (expected[measures].sum() > 0).all(), expected[measures].sum()
    welcome = expected[(expected.step == "welcome") & (expected.sent > 0)]
    assert welcome.variant.nunique() == 2


def test_holdout_comparison_is_recomputed_from_the_ledger(built):
    sends = frame("select * from nurture.message_ledger"
                  " where state = 'sent' or reason = 'held_out'")
    sends["is_held_out"] = sends.reason.eq("held_out")
    enrollments = sends.groupby(["program", "contact_id", "enrollment_id"]).agg(
        is_held_out=("is_held_out", "any"), first_due_at=("due_at", "min")).reset_index()
    enrollments = enrollments.merge(conversions(frame("select * from nurture.message_ledger")),
                                    on=["program", "contact_id", "enrollment_id"], how="left")
    enrollments["converted"] = enrollments.converted_at >= enrollments.first_due_at
    contacts = enrollments.groupby(["program", "contact_id"])[["is_held_out", "converted"]].any()
    mart = frame("select * from marts.program_holdout_comparison").set_index("program")
    assert set(mart.index) == set(contacts.index.get_level_values("program"))
    for program, group in contacts.groupby(level="program"):
        treated, held = group[~group.is_held_out], group[group.is_held_out]
        row = mart.loc[program]
        assert (row.treated_contacts, row.treated_converted) == (len(treated),
                                                                 treated.converted.sum())
        assert (row.held_out_contacts, row.held_out_converted) == (len(held), held.converted.sum())
        p_t, p_h = treated.converted.mean(), held.converted.mean()
        if held.empty:  # no holdout group (the demo's ten surveys): no difference to show
            assert row.held_out_conversion_rate is None and row.difference_ci_lower is None
            assert float(row.treated_conversion_rate) == pytest.approx(p_t, abs=1e-4)
            continue
        margin = 1.96 * math.sqrt(p_t * (1 - p_t) / len(treated) + p_h * (1 - p_h) / len(held))
        for column, value in (("treated_conversion_rate", p_t),
                              ("held_out_conversion_rate", p_h),
                              ("conversion_rate_difference", p_t - p_h),
                              ("difference_ci_lower", p_t - p_h - margin),
                              ("difference_ci_upper", p_t - p_h + margin)):
            assert float(row[column]) == pytest.approx(value, abs=1e-4), (program, column)
        assert row.is_difference_significant == (not (p_t - p_h - margin <= 0
                                                       <= p_t - p_h + margin))
    # held-out contacts converted anyway in some programs, and the programs made a difference
    assert mart.held_out_converted.sum() > 0 and mart.treated_converted.sum() > 0
    assert (mart.held_out_contacts > 0).sum() >= 3


def test_the_funnel_is_recomputed_from_crm_forms_scores_and_sales_feedback(built):
    crm = frame("select * from raw.crm_contacts").sort_values(
        ["updated_at", "_loaded_at"], ascending=False, na_position="last"
    ).drop_duplicates("contact_id").set_index("contact_id")
    stage, changed = crm.lifecycle_stage.str.lower(), crm.lifecycle_stage_changed_at

    def at_stage(name: str) -> pd.Series:
        return changed.where(stage == name)

    def per_contact(sql: str, column: str, how: str = "min") -> pd.Series:
        return frame(sql).groupby("contact_id")[column].agg(how).reindex(crm.index)

    feedback = "select contact_id, recorded_at from raw.sales_feedback where lower(outcome)"
    lead_at = earliest(at_stage("lead"),
                       per_contact("select * from raw.lead_profiles", "submitted_at"),
                       per_contact("select * from raw.form_fills", "filled_at"))
    scored_mql_at = earliest(
        at_stage("mql"),
        per_contact("select * from marts.lead_score_history where is_mql", "scored_at"),
        per_contact("select * from marts.lead_scores where is_mql", "scored_at"))
    first_feedback = per_contact("select * from raw.sales_feedback", "recorded_at")
    accepted = earliest(at_stage("sql"), per_contact(f"{feedback} = 'accepted'", "recorded_at"))
    opportunity = earliest(at_stage("opportunity"),
                           per_contact(f"{feedback} in ('won', 'lost')", "recorded_at"))
    customer = earliest(at_stage("customer"), per_contact(f"{feedback} = 'won'", "recorded_at"))
    handed_over = earliest(first_feedback, accepted, opportunity, customer)
    mql_at = scored_mql_at.where(~(scored_mql_at > handed_over))
    latest = frame("select feedback_id, contact_id, recorded_at, lower(trim(outcome)) as outcome"
                   " from raw.sales_feedback").sort_values(
        ["recorded_at", "feedback_id"]).groupby("contact_id").outcome.last().reindex(crm.index)
    current = stage.copy()
    for reached, name in ((lead_at.notna(), "lead"), (mql_at.notna(), "mql"),
                          (accepted.notna(), "sales_accepted"), (latest == "recycled", "recycled"),
                          (latest == "rejected", "rejected"), (opportunity.notna(), "opportunity"),
                          (latest == "lost", "closed_lost"), (customer.notna(), "customer")):
        current = current.mask(reached, name)  # later in this list wins, as in the model
    mart = frame("select contact_id, current_stage from marts.lifecycle_funnel")
    assert dict(zip(mart.contact_id, mart.current_stage, strict=True)) == current.to_dict()

    leads = pd.DataFrame({
        "cohort_month": lead_at.dt.date.map(lambda day: day.replace(day=1), na_action="ignore"),
        "leads": lead_at.notna(),
        "mqls": earliest(mql_at, handed_over).notna(),
        "sales_accepted": earliest(accepted, opportunity, customer).notna(),
        "opportunities": earliest(opportunity, customer).notna(),
        "customers": customer.notna(),
        "rejected": per_contact(f"{feedback} = 'rejected'", "recorded_at").notna(),
        "recycled": per_contact(f"{feedback} = 'recycled'", "recorded_at").notna(),
        "lost": current == "closed_lost",
    })[lead_at.notna()]
    expected = leads.groupby("cohort_month").sum().reset_index()
    snapshot = frame("select cohort_month, leads, mqls, sales_accepted, opportunities, customers,"
                     " rejected, recycled, lost from marts.funnel_daily_snapshot"
                     " where snapshot_date = (select max(snapshot_date)"
                     " from marts.funnel_daily_snapshot)")
    assert _rows(snapshot, ["cohort_month"]) == _rows(expected, ["cohort_month"])
    assert expected.leads.sum() == 30 and expected.customers.sum() == 1


def test_bi_marts_are_contracted_and_documented_and_exposed(built):
    manifest = json.loads(settings.DBT_MANIFEST.read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    for name in BI_MARTS:
        model = models[name]
        assert model["config"]["contract"]["enforced"] and model["description"], name
        undocumented = [c for c, col in model["columns"].items()
                        if not (col.get("data_type") and col.get("description"))]
        assert not undocumented, (name, undocumented)
    exposed = {ref.split(".")[-1] for exposure in manifest["exposures"].values()
               for ref in exposure["depends_on"]["nodes"]}
    assert exposed >= set(BI_MARTS) - {"consent_history"}


def _rows(df: pd.DataFrame, keys: list[str]) -> list[tuple]:
    """Rows as plain Python values, sorted by the key columns."""
    df = df.sort_values(keys).reset_index(drop=True)
    return [tuple(v.item() if hasattr(v, "item") else v for v in row)
            for row in df.itertuples(index=False)]
