"""The satisfaction survey end to end: demo data → dbt (Cosmos) → guard (GX) → plan →
SendGrid/Twilio SDKs → emulator, through Airflow's `dag.test()`, run three times.

Run 1 surveys everyone the demo data says is due: the long_ago contacts (30 days into
onboarding) and the holders of tickets closed two hours ago, one survey per contact whatever
the trigger; one ticket holder made SMS-only gets a short link by SMS. Then people answer on
the receiver's survey page, with the links the messages carried: a detractor, a promoter,
one who changes 9 into 2, and a forged link and an out-of-range score that store nothing.
Run 2 alerts the detractors' account owners and surveys nobody again; run 3 sends nothing.

The oracle is the demo dataset (`seed.build()`'s rows: scenarios, tickets, CRM owners), not
the planner's code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from nurture import ledger, runner, seed, warehouse
from nurture.emulator import OutboxStore
from nurture.webhooks.storage import PROVIDER_EVENT_TABLES

pytestmark = pytest.mark.e2e

PROGRAM = "satisfaction_survey"
DEFAULT_OWNER = "customer-success@nurture.example"  # dbt var default_account_owner_email
SURVEY_LINK = re.compile(r"\S+/survey/[A-Za-z0-9_-]+")
COMMENT_A = "Exports keep timing out"
COMMENT_C_FIRST = "Pretty good so far"
COMMENT_C = "Changed my mind: the report totals were wrong"


def execute(sql: str, params=None):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def reset_surveys() -> None:
    """No survey ledger rows, answers or short links from an earlier module, and no provider
    events that would withdraw someone's consent."""
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        cur.execute("delete from nurture.message_ledger where program = %s", (PROGRAM,))
        cur.execute("truncate raw.survey_responses")
        cur.execute("delete from nurture.short_links")
        cur.execute("truncate " + ", ".join(PROVIDER_EVENT_TABLES))


# --- the oracle, from the demo rows ---------------------------------------------------

def contact_rows(data) -> dict[str, tuple]:
    return {row[0]: row for row in data.tables["crm_contacts"]}


def of_scenario(data, name: str) -> list[str]:
    return [cid for cid, scenario in data.scenario_of.items() if scenario.name == name]


def closed_ticket_holders(data) -> list[str]:
    return [row[1] for row in data.tables["support_tickets"] if row[3] == "closed"]


def due_for_a_survey(data) -> set[str]:
    """30 days into onboarding, or a ticket closed: one survey each either way."""
    return set(of_scenario(data, "long_ago")) | set(closed_ticket_holders(data))


def owner_email(data, contact_id: str) -> str:
    owner_id = contact_rows(data)[contact_id][12]
    emails = {row[0]: row[2] for row in data.tables["crm_users"]}
    return emails.get(owner_id, DEFAULT_OWNER)


@pytest.fixture(scope="module")
def demo(warehouse_url, airflow_db):
    """The demo data, with one ticket holder made SMS-only and the people who will answer:
    A (a detractor), B (a promoter), C (9, then 2; no account owner), D (forges a link),
    all 30 days into onboarding; S answers the SMS."""
    reset_surveys()
    data = seed.build()
    with warehouse.connect() as conn:
        seed.load(conn, data)
    holders = closed_ticket_holders(data)
    long_ago = of_scenario(data, "long_ago")
    sms_only = next(cid for cid in holders if cid not in long_ago)
    # Later than the signup form's opt-in: email consent withdrawn, SMS consent kept.
    execute("insert into raw.consents values (%s, %s, 'email', 'opted_out', 'crm', %s, %s)",
            (f"{sms_only}-email-2", sms_only, data.loaded_at - timedelta(minutes=1),
             data.loaded_at))
    a, b, c, d = [cid for cid in long_ago if cid not in holders][:4]
    execute("update raw.crm_contacts set owner_id = null where contact_id = %s", (c,))
    rows = contact_rows(data)
    data.tables["crm_contacts"] = [row[:12] + (None,) if row[0] == c else row
                                   for row in data.tables["crm_contacts"]]
    assert rows[a][12] and rows[c][12]  # the seed gave them owners; C's is gone now
    return {"data": data, "sms_only": sms_only, "A": a, "B": b, "C": c, "D": d}


def survey_link(message) -> str:
    (url,) = SURVEY_LINK.findall(message["text"])
    return url


def forged(url: str) -> str:
    base, token = url.rsplit("/", 1)
    i = len(token) // 2
    return f"{base}/{token[:i]}{'B' if token[i] == 'A' else 'A'}{token[i + 1:]}"


def answer(url: str, score: str, comment: str | None = None) -> httpx.Response:
    return httpx.post(url, data={"score": score, **({"comment": comment} if comment else {})})


def survey_answers() -> dict[str, tuple]:
    return {row[0]: row[1:] for row in execute(
        "select contact_id, survey_id, channel, trigger, score, comment, answer_count"
        " from raw.survey_responses")}


def survey_ledger() -> set[tuple]:
    return set(execute(
        "select step, contact_id, enrollment_id, state, coalesce(reason, '')"
        " from nurture.message_ledger where program = %s and step <> 'detractor_alert'",
        (PROGRAM,)))


@pytest.fixture(scope="module")
def runs(demo, tmp_path_factory):
    """Three runs with the answers given between the first and the second; what was sent
    by each run, and what the receiver said to each visit."""
    people = {key: demo[key] for key in ("A", "B", "C", "D")}
    email_of = {cid: row[1] for cid, row in contact_rows(demo["data"]).items()}
    outbox_path = tmp_path_factory.mktemp("survey") / "outbox.sqlite"
    done = {}
    with runner.emulated_providers(outbox_path) as providers:
        store = OutboxStore(outbox_path)
        done["receiver_url"] = providers.receiver_url
        done["first"] = runner.run_program(PROGRAM)
        providers.wait_for_events()
        done["sent_first"] = sent_first = store.messages()
        done["ledger_first"] = survey_ledger()
        email = {key: next(m for m in sent_first if m["step"] == "survey_email"
                           and m["recipient"] == email_of[cid])
                 for key, cid in people.items()}
        link = {key: survey_link(message) for key, message in email.items()}
        done["emails"], done["links"] = email, link

        sms = [m for m in sent_first if m["channel"] == "sms"]
        short = re.findall(re.escape(providers.receiver_url) + r"/s/[A-Za-z0-9_-]{12}(?![\w-])",
                           sms[0]["text"]) if len(sms) == 1 else []
        done["sms"], done["short"] = sms, short
        if short:
            hop = done["hop"] = httpx.get(short[0], follow_redirects=False)
            page = done["sms_page"] = httpx.get(hop.headers.get("location", short[0]))
            if page.status_code == 200:
                done["sms_answer"] = answer(str(page.url), "8")

        done["prefilled"] = httpx.get(f"{link['A']}?score=3")
        done["answers"] = {
            "A": answer(link["A"], "3", COMMENT_A),
            "B": answer(link["B"], "10"),
            "C first": answer(link["C"], "9", COMMENT_C_FIRST),
            "C again": answer(link["C"], "2", COMMENT_C),
            "D forged, shown": httpx.get(forged(link["D"])),
            "D forged": answer(forged(link["D"]), "0", "forged"),
            "D out of range": answer(link["D"], "11"),
        }
        done["answers_stored"] = survey_answers()

        done["second"] = runner.run_program(PROGRAM)
        providers.wait_for_events()
        done["sent_second"] = store.messages()[len(sent_first):]
        done["ledger_second"] = survey_ledger()

        done["third"] = runner.run_program(PROGRAM)
        providers.wait_for_events()
        done["sent_third"] = store.messages()[len(sent_first) + len(done["sent_second"]):]
        done["ledger_third"] = survey_ledger()
    return done


def contact_of(message) -> str | None:
    rows = execute("select contact_id from nurture.message_ledger where ledger_id = %s",
                   (message["ledger_id"],))
    return rows[0][0] if rows else None


def test_every_run_succeeds(runs):
    assert [runs[run].state for run in ("first", "second", "third")] == ["success"] * 3


def test_everyone_due_gets_one_survey_by_email(demo, runs):
    email_of = {cid: row[1] for cid, row in contact_rows(demo["data"]).items()}
    expected = due_for_a_survey(demo["data"]) - {demo["sms_only"]}
    surveys = Counter(m["recipient"] for m in runs["sent_first"] if m["step"] == "survey_email")
    assert surveys == Counter(email_of[cid] for cid in expected)
    assert len(expected) == 13  # 10 long_ago + 4 ticket holders, one of them SMS-only
    assert {m["step"] for m in runs["sent_first"]} <= {"survey_email", "survey_sms"}


def test_the_sms_only_contact_gets_a_short_link(demo, runs):
    assert execute("select state, reason from nurture.message_ledger where program = %s"
                   " and step = 'survey_sms' and contact_id = %s",
                   (PROGRAM, demo["sms_only"])) == [("sent", None)]
    phone = contact_rows(demo["data"])[demo["sms_only"]][2]
    assert [(m["recipient"], m["step"]) for m in runs["sms"]] == [(phone, "survey_sms")]
    text = runs["sms"][0]["text"]
    assert len(runs["short"]) == 1, text
    assert "/survey/" not in text
    code = runs["short"][0].rsplit("/", 1)[1]
    stored = execute("select ledger_id::text, target from nurture.short_links where code = %s",
                     (code,))
    assert [row[0] for row in stored] == [runs["sms"][0]["ledger_id"]]
    assert contact_of(runs["sms"][0]) == demo["sms_only"]


def test_the_short_link_leads_to_the_survey_page(runs):
    assert "hop" in runs, f"no SMS with a short link: {runs['sms']}"
    hop, page = runs["hop"], runs["sms_page"]
    assert hop.status_code == 302
    assert hop.headers["location"].startswith(f"{runs['receiver_url']}/survey/")
    assert hop.headers["cache-control"] == "no-store"
    assert page.status_code == 200
    assert '<form method="post">' in page.text and 'name="score" value="10"' in page.text


def test_an_answer_through_the_short_link_is_the_sms_survey(demo, runs):
    assert "sms_answer" in runs, f"no survey page reached from an SMS: {runs['sms']}"
    assert runs["sms_answer"].status_code == 200
    assert runs["answers_stored"][demo["sms_only"]] == (
        runs["sms"][0]["ledger_id"], "sms", "ticket_closed", 8, None, 1)


def test_a_contact_with_two_triggers_gets_one_survey(demo, runs):
    """T005/T006 belong to long_ago contacts: the ticket (closed an hour before the 30 days
    were up) comes first, the onboarding milestone is then `messaged_recently`."""
    data = demo["data"]
    both = {row[1]: row[0] for row in data.tables["support_tickets"]
            if row[3] == "closed" and row[1] in of_scenario(data, "long_ago")}
    assert len(both) == 2
    for contact_id, ticket_id in both.items():
        rows = {(enrollment, state, reason) for step, cid, enrollment, state, reason
                in runs["ledger_first"] if step == "survey_email" and cid == contact_id}
        assert rows == {(f"survey:ticket_closed:{ticket_id}", "sent", ""),
                        (next(r[0] for r in rows if r[0].startswith("survey:onboarding_30d:")),
                         "skipped", "messaged_recently")}
    reasons = Counter((state, reason) for step, _, _, state, reason in runs["ledger_first"]
                      if step == "survey_email")
    assert reasons[("sent", "")] == 13 and reasons[("skipped", "messaged_recently")] == 2


def test_the_email_offers_eleven_prefilled_scores(runs):
    message, url = runs["emails"]["A"], runs["links"]["A"]
    hrefs = re.findall(r'href="([^"]*/survey/[^"]*)"', message["html"])
    assert [h for h in hrefs if "?score=" in h] == [f"{url}?score={n}" for n in range(11)]
    assert url in hrefs  # "answer on the page"
    page = runs["prefilled"]
    assert page.status_code == 200
    assert re.findall(r'value="(\d+)" required checked', page.text) == ["3"]


def test_answers_are_stored_one_per_survey_the_latest_wins(demo, runs):
    statuses = {who: response.status_code for who, response in runs["answers"].items()}
    assert statuses == {"A": 200, "B": 200, "C first": 200, "C again": 200,
                        "D forged, shown": 404, "D forged": 404, "D out of range": 400}
    survey_of = {key: runs["emails"][key]["ledger_id"] for key in ("A", "B", "C")}
    by_email = {contact: answer for contact, answer in runs["answers_stored"].items()
                if contact != demo["sms_only"]}  # the SMS answer: the short link's test
    assert by_email == {
        demo["A"]: (survey_of["A"], "email", "onboarding_30d", 3, COMMENT_A, 1),
        demo["B"]: (survey_of["B"], "email", "onboarding_30d", 10, None, 1),
        demo["C"]: (survey_of["C"], "email", "onboarding_30d", 2, COMMENT_C, 2),
    }  # nothing for D: neither the forged link nor the score of 11 stored anything


def test_detractors_alert_their_account_owner_once(demo, runs):
    data = demo["data"]
    alerts = {contact_of(m): m for m in runs["sent_second"]}
    assert [m["step"] for m in runs["sent_second"]] == ["detractor_alert"] * 2
    assert set(alerts) == {demo["A"], demo["C"]}
    assert alerts[demo["A"]]["recipient"] == owner_email(data, demo["A"]) != DEFAULT_OWNER
    assert alerts[demo["C"]]["recipient"] == owner_email(data, demo["C"]) == DEFAULT_OWNER
    a, c = alerts[demo["A"]]["text"], alerts[demo["C"]]["text"]
    assert "3/10" in a and COMMENT_A in a
    assert "2/10" in c and COMMENT_C in c and COMMENT_C_FIRST not in c and "9/10" not in c
    sent = execute("select contact_id, enrollment_id, state from nurture.message_ledger"
                   " where program = %s and step = 'detractor_alert'", (PROGRAM,))
    assert sorted(sent) == sorted(
        (demo[key], f"survey_response:{runs['emails'][key]['ledger_id']}", "sent")
        for key in ("A", "C"))


def test_nobody_is_surveyed_twice(runs):
    assert runs["ledger_second"] == runs["ledger_third"] == runs["ledger_first"]
    assert runs["sent_third"] == []


def test_the_marts_count_the_latest_answers(demo, runs):
    people = [demo[key] for key in ("A", "B", "C")]
    answers = dict(execute(
        "select contact_id, (score, nps_category, answer_count) from marts.survey_responses"
        " where contact_id = any(%s)", (people,)))
    assert answers == {demo["A"]: "(3,detractor,1)", demo["B"]: "(10,promoter,1)",
                       demo["C"]: "(2,detractor,2)"}
    result = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "build", "--quiet", "-s", "nps_by_month",
         "--indirect-selection", "cautious"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    (segment,) = {row[0] for row in execute(
        "select segment from marts.survey_responses where contact_id = any(%s)", (people,))}
    assert execute(
        "select responses, promoters, passives, detractors, nps from marts.nps_by_month"
        " where trigger = 'onboarding_30d' and segment = %s and month = ("
        "   select cast(date_trunc('month', min(first_answered_at) at time zone 'UTC') as date)"
        "   from marts.survey_responses where contact_id = any(%s))", (segment, people),
    ) == [(3, 1, 0, 2, Decimal("-33.3"))]  # (1 promoter - 2 detractors) / 3

