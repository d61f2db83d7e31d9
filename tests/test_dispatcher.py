"""The dispatcher against the real warehouse and the provider emulator, through the real
SendGrid and Twilio SDKs: a batch is claimed, rendered, sent and settled, and every way one
message can go wrong costs that message alone, with the right ledger state.

A tiny stub server (tests/providers/stub_server.py) stands in for a provider only where the
emulator cannot: answering 5xx, answering too slowly (timeouts), and answering slowly enough
to show the batch goes out concurrently.

Programs are named `dispatch_test*` and read `marts.dispatch_test_audience`, created here;
each test removes its own ledger rows and the table.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg2
import pytest
from providers.stub_server import StubProvider, closed_port_url, connection_env
from psycopg2.extras import RealDictCursor, execute_values

from nurture import ledger
from nurture.airflow_env import connection_env as airflow_connection_env
from nurture.airflow_env import connection_env_with_extra
from nurture.dispatcher import Dispatch, dispatch_batch
from nurture.exceptions import ConfigurationError, ProviderUnavailable
from nurture.program import Program, Sender, email, sms
from nurture.providers import SendGridHook, TwilioHook
from nurture.templates import TemplateSet

AUDIENCE = "dispatch_test_audience"
SENDER = Sender(email="hello@nurture.example", name="Nurture")
PROGRAM = Program(
    name="dispatch_test",
    audience=AUDIENCE,
    steps=(
        email("welcome", after=timedelta(0)),
        email("tips", after=timedelta(days=2)),
        sms("nudge", after=timedelta(days=3)),
        email("reminder", after=timedelta(0)),
    ),
    sender=SENDER,
)
OTHER_PROGRAM = Program(name="dispatch_test_other", audience=AUDIENCE,
                        steps=(email("welcome", after=timedelta(0)),), sender=SENDER)
PUBLIC_URL = "https://hooks.nurture.example"
ENROLLED = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)

TEMPLATES = {
    "dispatch_test/welcome/en/subject.txt": "Welcome, {{ first_name }}!\n",
    "dispatch_test/welcome/en/body.txt": "Hi {{ first_name }},\nwelcome aboard.\n"
                                         "{{ sender_name }}\n",
    "dispatch_test/welcome/en/body.html": "<p>Hi {{ first_name }},</p><p>welcome aboard.</p>\n",
    "dispatch_test/welcome/fi/subject.txt": "Tervetuloa, {{ first_name }}!\n",
    "dispatch_test/welcome/fi/body.txt": "Hei {{ first_name }},\ntervetuloa.\n",
    "dispatch_test/welcome/fi/body.html": "<p>Hei {{ first_name }},</p><p>tervetuloa.</p>\n",
    "dispatch_test/tips/en/subject.txt": "Three tips for you, {{ first_name }}\n",
    "dispatch_test/tips/en/body.txt": "Tip one: invite your team.\n"
                                      "{% if unsubscribe_url is defined %}Unsubscribe:"
                                      " {{ unsubscribe_url }}{% endif %}\n",
    "dispatch_test/tips/en/body.html": "<p>Tip one: invite your team.</p>\n",
    "dispatch_test/nudge/en/sms.txt": "{{ first_name }}, your account is waiting. Reply STOP to"
                                      " opt out.\n",
    "dispatch_test/reminder/en/subject.txt": "Your {{ topic }} session starts soon\n",
    "dispatch_test/reminder/en/body.txt": "{{ topic }} starts in an hour.\n",
    "dispatch_test/reminder/en/body.html": "<p>{{ topic }} starts in an hour.</p>\n",
    "dispatch_test_other/welcome/en/subject.txt": "Other program says hi\n",
    "dispatch_test_other/welcome/en/body.txt": "Hi from the other program.\n",
    "dispatch_test_other/welcome/en/body.html": "<p>Hi from the other program.</p>\n",
}


# -- fixtures and helpers ---------------------------------------------------------------------

LIVE_CONSENT = f"marts.{AUDIENCE}_consent"


@pytest.fixture
def conn(warehouse_url):
    conn = psycopg2.connect(warehouse_url)
    ledger.ensure_schema(conn)
    with conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        cur.execute(f"drop table if exists marts.{AUDIENCE} cascade")
        cur.execute(f"""
            create table marts.{AUDIENCE} (
                contact_id text not null,
                enrollment_id text not null,
                enrolled_at timestamptz not null,
                email text,
                phone text,
                first_name text,
                time_zone text,
                locale text,
                has_email_consent boolean not null,
                has_sms_consent boolean not null,
                is_activated boolean not null,
                topic text
            )""")
        # Consent as it is now: here the audience table itself (dbt's view in a real run).
        cur.execute(f"create view {LIVE_CONSENT} as select contact_id, has_email_consent,"
                    f" has_sms_consent from marts.{AUDIENCE}")
    conn.commit()
    yield conn
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("delete from nurture.message_ledger where program in %s",
                    ((PROGRAM.name, OTHER_PROGRAM.name),))
        cur.execute(f"drop table if exists marts.{AUDIENCE} cascade")
    conn.commit()
    conn.close()


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    for name, text in TEMPLATES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def run_id() -> str:
    return f"dispatch_test__{uuid.uuid4().hex}"


@pytest.fixture
def point_providers_at(monkeypatch):
    """Point the default connections at a stub or a closed port, for this test only."""

    def point(url: str, **sendgrid_extra) -> None:
        for key, value in connection_env(sendgrid_url=url, twilio_url=url,
                                         sendgrid_extra=sendgrid_extra).items():
            monkeypatch.setenv(key, value)

    return point


def contact(i: int, **fields) -> dict:
    row = dict(
        contact_id=f"c{i:03d}", enrollment_id=f"signup:c{i:03d}", enrolled_at=ENROLLED,
        email=f"person{i:03d}@example.com", phone=f"+1415555{i:04d}",
        first_name=f"Name{i:03d}", time_zone="Europe/Helsinki", locale="en",
        has_email_consent=True, has_sms_consent=True, is_activated=False, topic=None,
    )
    row.update(fields)
    return row


def add_to_audience(conn, contacts: list[dict]) -> None:
    columns = list(contacts[0])
    with conn.cursor() as cur:
        execute_values(cur, f"insert into marts.{AUDIENCE} ({', '.join(columns)}) values %s",
                       [tuple(c[k] for k in columns) for c in contacts])
    conn.commit()


def plan(conn, run_id: str, step: str, contacts: list[dict], *, batch_no: int = 0,
         program: Program = PROGRAM, recipients: dict[str, str] | None = None) -> None:
    """Write `planned` rows as the planner would (recipients overridable per contact id)."""
    channel = program.step(step).channel
    entries = [
        ledger.Entry(
            program=program.name, step=step, contact_id=c["contact_id"],
            enrollment_id=c["enrollment_id"], channel=channel, state="planned",
            due_at=c["enrolled_at"] + program.step(step).after,
            recipient=(recipients or {}).get(
                c["contact_id"], c["email"] if channel == "email" else c["phone"]),
            locale=c["locale"], batch_no=batch_no,
        )
        for c in contacts
    ]
    assert ledger.record(conn, entries, dag_run_id=run_id) == len(entries)
    conn.commit()


def ledger_rows(conn, run_id: str, *, program: Program = PROGRAM) -> dict[tuple[str, str], dict]:
    """(step, contact_id) -> ledger row."""
    with conn.cursor(cursor_factory=RealDictCursor) as cur:
        cur.execute("select *, ledger_id::text as ledger_id from nurture.message_ledger"
                    " where program = %s and dag_run_id = %s", (program.name, run_id))
        found = {(row["step"], row["contact_id"]): dict(row) for row in cur}
    conn.commit()
    return found


def make_job(templates: Path, *, program: Program = PROGRAM, concurrency: int = 8,
             timeout: float = 30) -> Dispatch:
    """The dispatcher wired as the DAG's send task wires it: the real hooks' `send`."""
    return Dispatch(
        program=program,
        templates=TemplateSet(templates, program.name, program.default_locale),
        email=SendGridHook(timeout=timeout),
        sms=TwilioHook(timeout=timeout),
        public_url=PUBLIC_URL,
        concurrency=concurrency,
        live_consent=LIVE_CONSENT,
    )


def with_extra(monkeypatch, conn_id: str, **extra) -> None:
    """This test's connection `conn_id` (from the environment) with `extra` added."""
    for key, value in connection_env_with_extra(conn_id, **extra).items():
        monkeypatch.setenv(key, value)


def dispatch(conn, job: Dispatch, run_id: str, channel: str, batch_no: int = 0) -> dict:
    return dispatch_batch(conn, job, dag_run_id=run_id, channel=channel, batch_no=batch_no)


def custom_args(request: dict) -> dict:
    """SendGrid's effective custom_args: message level, overridden per personalization."""
    merged = dict(request.get("custom_args") or {})
    for personalization in request["personalizations"]:
        merged.update(personalization.get("custom_args") or {})
    return merged


# -- a healthy batch --------------------------------------------------------------------------


def test_a_batch_is_claimed_rendered_sent_and_settled(conn, templates, emulator, run_id):
    _, outbox = emulator
    people = [contact(i, locale="fi" if i % 5 == 0 else "en") for i in range(45)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people[:25])
    plan(conn, run_id, "tips", people[25:40])
    plan(conn, run_id, "tips", people[40:], batch_no=1)  # the next batch: not this dispatch
    plan(conn, run_id, "nudge", people[:10])
    job = make_job(templates)

    assert dispatch(conn, job, run_id, "email") == {"welcome": {"sent": 25}, "tips": {"sent": 15}}
    assert dispatch(conn, job, run_id, "sms") == {"nudge": {"sent": 10}}

    messages = outbox.messages()
    expected = Counter([(c["email"], "welcome") for c in people[:25]]
                       + [(c["email"], "tips") for c in people[25:40]]
                       + [(c["phone"], "nudge") for c in people[:10]])
    assert Counter((m["recipient"], m["step"]) for m in messages) == expected
    assert max(expected.values()) == 1

    rows = ledger_rows(conn, run_id)
    by_ledger_id = {row["ledger_id"]: row for row in rows.values()}
    versions = job.templates.version
    for message in messages:
        row = by_ledger_id[message["ledger_id"]]
        assert (row["step"], row["recipient"]) == (message["step"], message["recipient"])
        assert message["program"] == PROGRAM.name
        assert row["state"] == "sent" and row["reason"] is None
        assert row["provider_message_id"] == message["message_id"]
        assert row["sent_at"] is not None
        template_locale = row["locale"] if row["step"] == "welcome" else "en"  # no tips/fi
        assert row["template_version"] == versions(row["step"], template_locale)
        if message["channel"] == "email":
            request = message["request"]
            assert custom_args(request) == {"ledger_id": row["ledger_id"],
                                            "program": PROGRAM.name, "step": row["step"]}
            assert request["categories"] == [PROGRAM.name]
            assert message["sender"] == SENDER.email
        else:
            callback = urlsplit(message["request"]["StatusCallback"])
            assert f"{callback.scheme}://{callback.netloc}{callback.path}" == (
                f"{PUBLIC_URL}/webhooks/twilio/status")
            assert parse_qs(callback.query) == {"ledger_id": [row["ledger_id"]],
                                                "program": [PROGRAM.name], "step": ["nudge"]}
    assert versions("welcome", "fi") != versions("welcome", "en")

    by_key = {(m["recipient"], m["step"]): m for m in messages}
    finnish, english = by_key[("person000@example.com", "welcome")], by_key[
        ("person001@example.com", "welcome")]
    assert (finnish["subject"], finnish["text"]) == ("Tervetuloa, Name000!",
                                                     "Hei Name000,\ntervetuloa.")
    assert (english["subject"], english["html"]) == (
        "Welcome, Name001!", "<p>Hi Name001,</p><p>welcome aboard.</p>")
    assert english["text"] == "Hi Name001,\nwelcome aboard.\nNurture"
    assert by_key[("+14155550003", "nudge")]["text"] == (
        "Name003, your account is waiting. Reply STOP to opt out.")

    # The next batch is untouched, and dispatching the same batches again sends nothing.
    assert {rows[("tips", c["contact_id"])]["state"] for c in people[40:]} == {"planned"}
    assert dispatch(conn, job, run_id, "email") == {}
    assert dispatch(conn, job, run_id, "sms") == {}
    assert len(outbox.messages()) == 50


def test_html_parts_are_escaped_and_text_parts_are_not(conn, templates, emulator, run_id):
    _, outbox = emulator
    person = contact(1, first_name="<Ann & Bob>")
    add_to_audience(conn, [person])
    plan(conn, run_id, "welcome", [person])

    assert dispatch(conn, make_job(templates), run_id, "email") == {"welcome": {"sent": 1}}

    [message] = outbox.messages()
    assert message["html"].startswith("<p>Hi &lt;Ann &amp; Bob&gt;,</p>")
    assert message["subject"] == "Welcome, <Ann & Bob>!"
    assert message["text"].startswith("Hi <Ann & Bob>,")


# -- one message goes wrong, the rest go out --------------------------------------------------


def test_a_contact_missing_a_template_field_fails_alone(conn, templates, emulator, run_id):
    _, outbox = emulator
    people = [contact(i, first_name=None if i == 2 else f"Name{i:03d}") for i in range(5)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)

    counts = dispatch(conn, make_job(templates), run_id, "email")

    assert counts == {"welcome": {"sent": 4, "template_error": 1}}
    rows = ledger_rows(conn, run_id)
    broken = rows[("welcome", "c002")]
    assert broken["state"] == "failed"
    assert broken["reason"].startswith("template_error:")
    assert "first_name" in broken["reason"] and "welcome/en/" in broken["reason"]
    assert broken["provider_message_id"] is None and broken["sent_at"] is None
    assert sorted(m["recipient"] for m in outbox.messages()) == [
        c["email"] for c in people if c["contact_id"] != "c002"]
    assert {rows[("welcome", c["contact_id"])]["state"] for c in people} == {"sent", "failed"}


def test_recipients_the_provider_rejects_fail_alone(conn, templates, emulator, run_id):
    _, outbox = emulator
    people = [contact(i) for i in range(4)]
    add_to_audience(conn, people)
    # Written straight into the ledger's recipient, past the planner's address checks.
    plan(conn, run_id, "welcome", people, recipients={"c001": "person001@localhost"})
    plan(conn, run_id, "nudge", people[:3], recipients={"c002": "555-0100"})
    job = make_job(templates)

    assert dispatch(conn, job, run_id, "email") == {"welcome": {"sent": 3,
                                                                "provider_rejected": 1}}
    assert dispatch(conn, job, run_id, "sms") == {"nudge": {"sent": 2, "provider_rejected": 1}}

    rows = ledger_rows(conn, run_id)
    bad_email, bad_phone = rows[("welcome", "c001")], rows[("nudge", "c002")]
    assert bad_email["state"] == bad_phone["state"] == "failed"
    assert bad_email["reason"].startswith("provider_rejected: SendGrid answered 400")
    assert "Does not contain a valid address." in bad_email["reason"]
    assert bad_phone["reason"].startswith("provider_rejected: Twilio answered 400 (error 21211)")
    assert bad_email["template_version"] == job.templates.version("welcome", "en")
    assert bad_email["provider_message_id"] is None and bad_phone["provider_message_id"] is None
    assert Counter((m["recipient"], m["step"]) for m in outbox.messages()) == Counter(
        [(c["email"], "welcome") for c in people if c["contact_id"] != "c001"]
        + [(c["phone"], "nudge") for c in people[:3] if c["contact_id"] != "c002"])


def test_a_contact_who_left_the_audience_is_not_sent(conn, templates, emulator, run_id):
    _, outbox = emulator
    people = [contact(i) for i in range(3)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)
    with conn.cursor() as cur:  # e.g. deleted or merged between plan and dispatch
        cur.execute(f"delete from marts.{AUDIENCE} where contact_id = 'c001'")
    conn.commit()

    assert dispatch(conn, make_job(templates), run_id, "email") == {
        "welcome": {"sent": 2, "left_audience": 1}}

    gone = ledger_rows(conn, run_id)[("welcome", "c001")]
    assert gone["state"] == "skipped" and gone["reason"] == "left_audience"
    assert sorted(m["recipient"] for m in outbox.messages()) == [
        "person000@example.com", "person002@example.com"]


# -- the provider is down, broken or slow -----------------------------------------------------


def test_an_unreachable_provider_keeps_the_rows_planned_for_a_retry(
        conn, templates, run_id, point_providers_at, emulator, monkeypatch):
    people = [contact(i) for i in range(3)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)
    plan(conn, run_id, "nudge", people)
    point_providers_at(closed_port_url())
    job = make_job(templates)

    # A refused connection is unambiguous (nothing left): the rows go back to planned and
    # the task fails, so Airflow's retry (or the next run) sends them.
    for channel in ("email", "sms"):
        with pytest.raises(ProviderUnavailable, match="^3 message"):
            dispatch(conn, job, run_id, channel)

    for (step, _), row in ledger_rows(conn, run_id).items():
        provider = "SendGrid" if step == "welcome" else "Twilio"
        assert row["state"] == "planned"
        assert row["reason"].startswith(f"provider_unavailable: {provider} unreachable")
        assert "refused" in row["reason"].lower()

    monkeypatch.undo()  # the connections point at the emulator again: the retry sends all
    assert dispatch(conn, make_job(templates), run_id, "email") == {"welcome": {"sent": 3}}
    assert len(emulator[1].messages()) == 3


def test_a_5xx_leaves_rows_unknown_and_they_are_never_resent(conn, templates, run_id,
                                                            point_providers_at):
    people = [contact(i) for i in range(3)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)
    plan(conn, run_id, "nudge", people[:2])

    with StubProvider(status=500).running() as stub:
        point_providers_at(stub.url)
        job = make_job(templates)
        assert dispatch(conn, job, run_id, "email") == {
            "welcome": {"provider_outcome_unknown": 3}}
        assert dispatch(conn, job, run_id, "sms") == {"nudge": {"provider_outcome_unknown": 2}}
        assert stub.requests == 3  # the three emails went in one request, each SMS alone

        # A retry of the same batches (a task retry, a cleared task) sends nothing.
        retry = make_job(templates)
        assert dispatch(conn, retry, run_id, "email") == {}
        assert dispatch(conn, retry, run_id, "sms") == {}
        assert stub.requests == 3

    for row in ledger_rows(conn, run_id).values():
        assert row["state"] == "unknown"
        assert row["reason"].startswith("provider_outcome_unknown:")
        assert "500" in row["reason"]
        assert row["template_version"] is not None


def test_a_timeout_after_the_request_left_leaves_rows_unknown(conn, templates, run_id,
                                                             point_providers_at):
    people = [contact(i) for i in range(3)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)
    plan(conn, run_id, "nudge", people)

    with StubProvider(delay=5).running() as stub:
        point_providers_at(stub.url)
        job = make_job(templates, timeout=0.3)
        assert dispatch(conn, job, run_id, "email") == {
            "welcome": {"provider_outcome_unknown": 3}}
        assert dispatch(conn, job, run_id, "sms") == {"nudge": {"provider_outcome_unknown": 3}}
        assert stub.requests == 4  # every request reached it (the emails shared one)

    assert {(row["state"], row["reason"].split(":")[0])
            for row in ledger_rows(conn, run_id).values()} == {
        ("unknown", "provider_outcome_unknown")}


# -- throughput comes from concurrency --------------------------------------------------------


@pytest.mark.parametrize(("channel", "per_request", "requests"), [
    ("email", 1, 40), ("sms", 1, 40), ("email", 5, 8)])
def test_a_batch_goes_out_concurrently_within_a_bounded_pool(
        conn, templates, run_id, point_providers_at, channel, per_request, requests):
    import sendgrid  # noqa: F401  (SDK import time is not what this measures)
    import twilio.rest  # noqa: F401

    people = [contact(i) for i in range(40)]
    add_to_audience(conn, people)
    step = "welcome" if channel == "email" else "nudge"
    plan(conn, run_id, step, people)

    with StubProvider(delay=0.1).running() as stub:  # 40 x 100 ms = 4 s one after another
        point_providers_at(stub.url, personalizations_per_request=per_request)
        started = time.monotonic()
        counts = dispatch(conn, make_job(templates, concurrency=8), run_id, channel)
        elapsed = time.monotonic() - started

    assert counts == {step: {"sent": 40}}
    assert stub.requests == requests
    assert elapsed < 2.0, f"40 sends at 100 ms each took {elapsed:.2f} s with concurrency 8"
    assert 2 <= stub.max_in_flight <= 8


def test_many_emails_to_a_request_each_reach_their_recipient_once(conn, templates, emulator,
                                                                   run_id):
    """Emails share requests, each still its own message: recipient, subject, body, headers
    and the ledger id in its events."""
    _, outbox = emulator
    people = [contact(i) for i in range(7)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)

    assert dispatch(conn, make_job(templates), run_id, "email") == {"welcome": {"sent": 7}}

    messages = outbox.messages()
    rows = ledger_rows(conn, run_id)
    assert len({m["message_id"] for m in messages}) == 1  # one request
    assert sorted(m["recipient"] for m in messages) == sorted(p["email"] for p in people)
    for message in messages:
        row = next(r for r in rows.values() if r["ledger_id"] == message["ledger_id"])
        name = next(p["first_name"] for p in people if p["email"] == message["recipient"])
        assert row["state"] == "sent" and row["provider_message_id"] == message["message_id"]
        assert name in message["text"] and name in message["html"]
        assert sum(other["first_name"] in message["html"] for other in people) == 1


def test_a_refused_request_is_sent_again_one_by_one_and_only_the_bad_message_fails(
        conn, templates, emulator, run_id):
    """SendGrid refuses a whole request for one bad address: the others still go, once."""
    _, outbox = emulator
    people = [contact(i) for i in range(4)]
    add_to_audience(conn, people)
    # An address that passed our check somehow, and SendGrid refuses.
    plan(conn, run_id, "welcome", people, recipients={people[2]["contact_id"]: "no-one@localhost"})

    assert dispatch(conn, make_job(templates), run_id, "email") == {
        "welcome": {"sent": 3, "provider_rejected": 1}}

    assert sorted(m["recipient"] for m in outbox.messages()) == sorted(
        p["email"] for i, p in enumerate(people) if i != 2)
    failed = [r for r in ledger_rows(conn, run_id).values() if r["state"] == "failed"]
    assert len(failed) == 1 and "400" in failed[0]["reason"]


# -- regressions: once bugs, fixed --------------------------------------------------------------


def test_missing_credentials_fail_loudly_and_leave_the_batch_sendable(
        conn, templates, run_id, monkeypatch):
    people = [contact(i) for i in range(3)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)
    for key, value in airflow_connection_env("sendgrid_default", conn_type="sendgrid",
                                             host="https://api.sendgrid.com").items():
        monkeypatch.setenv(key, value)  # no password: no API key

    with pytest.raises(ConfigurationError, match="sendgrid_default"):
        dispatch(conn, make_job(templates), run_id, "email")

    states = {row["state"] for row in ledger_rows(conn, run_id).values()}
    assert states <= {"planned", "failed"}, f"rows that certainly never left are {states}"


def test_programs_sharing_a_run_id_dispatch_only_their_own_rows(conn, templates, emulator):
    _, outbox = emulator
    run_id = "scheduled__2001-01-01T00:00:00+00:00"  # what any DAG's run at that time is named
    mine, theirs = [contact(i) for i in range(2)], [contact(i) for i in range(2, 4)]
    add_to_audience(conn, mine + theirs)
    plan(conn, run_id, "welcome", mine)
    plan(conn, run_id, "welcome", theirs, program=OTHER_PROGRAM)

    counts = dispatch(conn, make_job(templates), run_id, "email")

    assert {row["state"] for row in ledger_rows(conn, run_id, program=OTHER_PROGRAM).values()
            } == {"planned"}
    assert sorted(m["recipient"] for m in outbox.messages()) == [c["email"] for c in mine]
    assert counts == {"welcome": {"sent": 2}}


def test_each_enrollment_is_rendered_from_its_own_audience_row(conn, templates, emulator,
                                                               run_id):
    _, outbox = emulator
    first = contact(1, enrollment_id="webinar:python", topic="Python basics")
    second = contact(1, enrollment_id="webinar:sql", topic="Advanced SQL")
    add_to_audience(conn, [first, second])
    plan(conn, run_id, "reminder", [first, second])

    assert dispatch(conn, make_job(templates), run_id, "email") == {"reminder": {"sent": 2}}

    by_ledger_id = {row["ledger_id"]: row for row in ledger_rows_all(conn, run_id)}
    subjects = {by_ledger_id[m["ledger_id"]]["enrollment_id"]: m["subject"]
                for m in outbox.messages()}
    assert subjects == {"webinar:python": "Your Python basics session starts soon",
                        "webinar:sql": "Your Advanced SQL session starts soon"}


def ledger_rows_all(conn, run_id: str) -> list[dict]:
    """Every row of the run (ledger_rows keys by contact, which one contact's enrollments
    would collapse)."""
    with conn.cursor(cursor_factory=RealDictCursor) as cur:
        cur.execute("select *, ledger_id::text as ledger_id from nurture.message_ledger"
                    " where program = %s and dag_run_id = %s", (PROGRAM.name, run_id))
        found = [dict(row) for row in cur]
    conn.commit()
    return found


def test_marketing_email_carries_a_signed_one_click_unsubscribe(conn, templates, emulator,
                                                                 run_id):
    from dataclasses import replace

    from nurture.tokens import TokenSigner, generate_key

    _, outbox = emulator
    signer = TokenSigner([generate_key()])
    people = [contact(i) for i in range(3)]
    add_to_audience(conn, people)
    plan(conn, run_id, "tips", people)
    job = replace(make_job(templates), signer=signer)

    assert dispatch(conn, job, run_id, "email") == {"tips": {"sent": 3}}
    by_recipient = {c["email"]: c for c in people}
    for message in outbox.messages():
        headers = message["request"]["headers"]
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = headers["List-Unsubscribe"].strip("<>")
        assert url.startswith(f"{PUBLIC_URL}/unsubscribe/")
        assert url in message["text"]  # the footer links to the same page
        claims = signer.verify(url.rsplit("/", 1)[1], purpose="unsubscribe")
        contact_id = by_recipient[message["recipient"]]["contact_id"]
        assert (claims.contact_id, claims.channel) == (contact_id, "email")
        assert contact_id not in url



# -- providers push back, or lose the answer (emulator faults) ----------------------------------


@pytest.fixture
def faults(emulator):
    """Set the emulator's fault plan (nurture.emulator.faults) for this test."""
    import httpx

    url, _ = emulator

    def set_plan(plan: dict) -> None:
        httpx.post(f"{url}/_emulator/faults", json=plan).raise_for_status()

    yield set_plan
    httpx.delete(f"{url}/_emulator/faults").raise_for_status()


def patient_job(templates: Path, **hooks) -> Dispatch:
    """make_job with hooks that retry pushback quickly (tests wait seconds, not minutes)."""
    from dataclasses import replace

    return replace(make_job(templates), email=SendGridHook(**hooks.get("email", {})),
                   sms=TwilioHook(backoff_base_s=0.05, **hooks.get("sms", {})))


def test_sendgrid_429s_are_retried_and_each_message_sent_exactly_once(
        conn, templates, emulator, run_id, faults):
    _, outbox = emulator
    people = [contact(i) for i in range(12)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)
    faults({"faults": [{"kind": "too_many_requests", "every": 3, "provider": "sendgrid"}]})

    assert dispatch(conn, patient_job(templates), run_id, "email") == {"welcome": {"sent": 12}}

    assert_each_sent_once(conn, run_id, outbox, [c["email"] for c in people])


def assert_each_sent_once(conn, run_id: str, outbox, recipients: list[str]) -> None:
    """The provider got one message per recipient, and the ledger says every row was sent."""
    assert Counter(m["recipient"] for m in outbox.messages()) == Counter(recipients)
    assert {row["state"] for row in ledger_rows(conn, run_id).values()} == {"sent"}


def test_twilio_20429s_are_retried_and_each_sms_sent_exactly_once(
        conn, templates, emulator, run_id, faults):
    _, outbox = emulator
    people = [contact(i) for i in range(12)]
    add_to_audience(conn, people)
    plan(conn, run_id, "nudge", people)
    faults({"twilio_max_concurrent": 2, "latency_s": 0.1})

    job = patient_job(templates, sms={"attempts_when_limited": 20})
    assert dispatch(conn, job, run_id, "sms") == {"nudge": {"sent": 12}}

    assert_each_sent_once(conn, run_id, outbox, [c["phone"] for c in people])


def test_still_pushed_back_after_the_retries_the_rows_go_back_to_planned_and_out_once(
        conn, templates, emulator, run_id, faults):
    _, outbox = emulator
    people = [contact(i) for i in range(3)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)
    plan(conn, run_id, "nudge", people)
    faults({"faults": [{"kind": "too_many_requests", "every": 1}]})
    job = patient_job(templates, email={"attempts_when_limited": 2},
                      sms={"attempts_when_limited": 2})

    for channel in ("email", "sms"):
        with pytest.raises(ProviderUnavailable, match="^3 message"):
            dispatch(conn, job, run_id, channel)
    assert outbox.messages() == []
    rows = ledger_rows(conn, run_id).values()
    assert {row["state"] for row in rows} == {"planned"}
    assert all(row["reason"].startswith("provider_unavailable:") and "429" in row["reason"]
               for row in rows)

    faults({})  # the provider has room again: the task's retry sends each message once
    assert dispatch(conn, job, run_id, "email") == {"welcome": {"sent": 3}}
    assert dispatch(conn, job, run_id, "sms") == {"nudge": {"sent": 3}}
    assert len(outbox.messages()) == 6


@pytest.mark.parametrize("per_request", [1, 2])
@pytest.mark.parametrize(("kind", "stored"), [("drop", 2), ("reset", 0)])
def test_a_lost_answer_is_unknown_and_never_resent_whether_or_not_it_was_accepted(
        conn, templates, emulator, run_id, faults, kind, stored, per_request, monkeypatch):
    """Every second request's answer is lost: two of four emails, whether they went one or
    two to a request."""
    _, outbox = emulator
    with_extra(monkeypatch, "sendgrid_default", personalizations_per_request=per_request)
    people = [contact(i) for i in range(4)]
    add_to_audience(conn, people)
    plan(conn, run_id, "welcome", people)
    faults({"faults": [{"kind": kind, "every": 2}]})

    counts = dispatch(conn, patient_job(templates), run_id, "email")

    assert counts == {"welcome": {"sent": 2, "provider_outcome_unknown": 2}}
    assert len(outbox.messages()) == 2 + stored  # only the outbox knows whether it went out
    faults({})
    assert dispatch(conn, patient_job(templates), run_id, "email") == {}
    assert len(outbox.messages()) == 2 + stored
    unknown = [row for row in ledger_rows(conn, run_id).values() if row["state"] == "unknown"]
    assert len(unknown) == 2


def test_sms_go_out_at_the_senders_rate_never_above_it(conn, templates, emulator_apart, run_id,
                                                       monkeypatch):

    from nurture.bench.dispatch import max_in_window

    _, outbox = emulator_apart
    with_extra(monkeypatch, "twilio_default", messages_per_second=10)
    people = [contact(i) for i in range(25)]
    add_to_audience(conn, people)
    plan(conn, run_id, "nudge", people)

    assert dispatch(conn, make_job(templates, concurrency=4), run_id, "sms") == {
        "nudge": {"sent": 25}}

    arrivals = sorted(datetime.fromisoformat(m["received_at"]).timestamp()
                      for m in outbox.messages())
    assert max_in_window(arrivals, 1.0) <= 10
