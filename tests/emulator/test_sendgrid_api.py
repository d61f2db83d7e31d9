"""SendGrid mail/send through the real SDK over HTTP, plus the outbox store underneath it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from python_http_client.exceptions import BadRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Cc,
    CustomArg,
    Mail,
    MailSettings,
    Personalization,
    SandBoxMode,
    To,
)

from nurture.emulator import OutboxStore
from nurture.providers.sendgrid_hook import EmailMessage, batch_body

from .conftest import CONTRACTS_DIR, CREDENTIALS

SENDER = "programs@nurture.example"


@pytest.fixture
def sendgrid(emulator_url: str) -> SendGridAPIClient:
    return SendGridAPIClient(api_key=CREDENTIALS["sendgrid_api_key"], host=emulator_url)


def personalization(*emails: str, subject: str | None = None, **custom_args: str):
    p = Personalization()
    for email in emails:
        p.add_to(To(email))
    if subject:
        p.subject = subject
    for key, value in custom_args.items():
        p.add_custom_arg(CustomArg(key, value))
    return p


def campaign_mail(*personalizations: Personalization, subject: str | None = "Welcome") -> Mail:
    mail = Mail(from_email=SENDER, subject=subject, plain_text_content="Hello there",
                html_content="<p>Hello there</p>")
    for p in personalizations:
        mail.add_personalization(p, index=len(mail.personalizations or []))
    return mail


def bad_request(sendgrid: SendGridAPIClient, mail: Mail | dict) -> list[dict]:
    with pytest.raises(BadRequestsError) as caught:
        sendgrid.send(mail)
    assert caught.value.status_code == 400
    return json.loads(caught.value.body)["errors"]


def test_send_is_accepted_and_stored_per_recipient(sendgrid, outbox):
    mail = campaign_mail(
        personalization("ana@example.com", "bo@example.com", ledger_id="L-1"),
        personalization("cy@example.com", subject="Hi Cy", ledger_id="L-2", step="nudge"),
    )
    mail.custom_arg = [CustomArg("program", "onboarding"), CustomArg("step", "welcome")]

    response = sendgrid.send(mail)

    assert response.status_code == 202
    assert response.body in (b"", "")
    message_id = response.headers["X-Message-Id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", message_id)
    records = outbox.messages()
    assert [(r["recipient"], r["subject"], r["program"], r["step"], r["ledger_id"])
            for r in records] == [
        ("ana@example.com", "Welcome", "onboarding", "welcome", "L-1"),
        ("bo@example.com", "Welcome", "onboarding", "welcome", "L-1"),
        ("cy@example.com", "Hi Cy", "onboarding", "nudge", "L-2"),
    ]
    first = records[0]
    assert first["message_id"] == message_id
    assert (first["channel"], first["sender"]) == ("email", SENDER)
    assert (first["text"], first["html"]) == ("Hello there", "<p>Hello there</p>")
    # Each record keeps what its personalization received: the one personalization, its
    # custom_args merged over the message's.
    sent = mail.get()
    assert first["request"] == {**sent, "personalizations": sent["personalizations"][:1],
                                "custom_args": {**sent["custom_args"], "ledger_id": "L-1"}}
    assert first["received_at"].endswith("+00:00")


def test_substitutions_make_each_recipients_message(sendgrid, outbox):
    body = {
        "from": {"email": SENDER},
        "content": [{"type": "text/plain", "value": "%text%"},
                    {"type": "text/html", "value": "<div>%html%</div>"}],
        "personalizations": [
            {"to": [{"email": "ana@example.com"}], "subject": "Hi %name%",
             "substitutions": {"%text%": "Hello Ana", "%html%": "<p>Ana</p>", "%name%": "Ana"},
             "headers": {"List-Unsubscribe": "<https://u.example/a>"}},
            {"to": [{"email": "bo@example.com"}], "subject": "Hi %name%",
             # a value holding a tag is not substituted again
             "substitutions": {"%text%": "Hello %name%", "%html%": "<p>Bo</p>", "%name%": "Bo"}},
        ],
    }

    assert sendgrid.client.mail.send.post(request_body=body).status_code == 202

    ana, bo = outbox.messages()
    assert (ana["subject"], ana["text"], ana["html"]) == ("Hi Ana", "Hello Ana",
                                                         "<div><p>Ana</p></div>")
    assert (bo["subject"], bo["text"], bo["html"]) == ("Hi Bo", "Hello %name%",
                                                      "<div><p>Bo</p></div>")
    assert ana["request"]["headers"] == {"List-Unsubscribe": "<https://u.example/a>"}
    assert "headers" not in bo["request"]


def test_substitutions_over_10000_bytes_are_refused(sendgrid, outbox):
    body = {"from": {"email": SENDER}, "subject": "Hi",
            "content": [{"type": "text/plain", "value": "%text%"}],
            "personalizations": [{"to": [{"email": "ana@example.com"}],
                                  "substitutions": {"%text%": "x" * 10_000}}]}

    errors = bad_request(sendgrid, body)

    assert [e["field"] for e in errors] == ["personalizations.0.substitutions"]
    assert "10,000 bytes" in errors[0]["message"]
    assert outbox.messages() == []


def test_wrong_api_key_is_unauthorized(emulator_url, outbox):
    client = SendGridAPIClient(api_key="SG.wrong", host=emulator_url)
    with pytest.raises(UnauthorizedError) as caught:
        client.send(campaign_mail(personalization("ana@example.com")))
    assert caught.value.status_code == 401
    assert json.loads(caught.value.body) == {"errors": [{
        "field": None, "help": None,
        "message": "The provided authorization grant is invalid, expired, or revoked"}]}
    assert outbox.messages() == []


def test_invalid_email_is_rejected(sendgrid, outbox):
    errors = bad_request(sendgrid, campaign_mail(personalization("ana@exa_mple.com")))
    assert errors == [{
        "message": "Does not contain a valid address.",
        "field": "personalizations.0.to.0.email",
        "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
                "#message.personalizations.to",
    }]
    assert outbox.messages() == []


def test_subject_required_unless_in_every_personalization(sendgrid, outbox):
    errors = bad_request(sendgrid, campaign_mail(
        personalization("ana@example.com", subject="Hi"), personalization("bo@example.com"),
        subject=None))
    assert [e["field"] for e in errors] == ["subject"]
    assert errors[0]["message"].startswith("The subject is required.")

    sendgrid.send(campaign_mail(personalization("ana@example.com", subject="Hi"), subject=None))
    assert [r["subject"] for r in outbox.messages()] == ["Hi"]


def test_more_than_1000_personalizations_is_rejected(sendgrid):
    mail = Mail(from_email=SENDER, to_emails=[f"user{i}@example.com" for i in range(1001)],
                subject="Hi", plain_text_content="x", is_multiple=True)
    errors = bad_request(sendgrid, mail)
    assert [e["field"] for e in errors] == ["personalizations"]
    assert "You have provided 1001 personalizations" in errors[0]["message"]


def test_more_than_1000_recipients_is_rejected(sendgrid):
    many = personalization(*[f"user{i}@example.com" for i in range(600)])
    more = personalization(*[f"other{i}@example.com" for i in range(401)])
    errors = bad_request(sendgrid, campaign_mail(many, more))
    assert [e["message"] for e in errors] == [
        "There is a limit of 1000 total recipients (to + cc + bcc) per request."]


@pytest.mark.parametrize("where", ["cc of the same personalization", "another personalization"])
def test_an_address_may_appear_once_per_request(sendgrid, outbox, where):
    first = personalization("ana@example.com")
    if where == "another personalization":
        mail, field = campaign_mail(first, personalization("ANA@example.com")), "personalizations.1"
    else:
        first.add_cc(Cc("ana@example.com"))
        mail, field = campaign_mail(first), "personalizations.0"
    errors = bad_request(sendgrid, mail)
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["message"].startswith("Each email address in the personalization block")
    assert outbox.messages() == []


def test_all_errors_are_reported_together(sendgrid):
    errors = bad_request(sendgrid, {
        "personalizations": [{"to": [{"email": "ana@example.com"}], "custom_args": {"n": 1}}],
        "from": {"email": "nobody"},
        "content": [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain",
                                                              "value": "x"}],
    })
    assert [e["field"] for e in errors] == [
        "from.email", "subject", "content", "personalizations.0.custom_args"]
    assert all(e["help"].startswith("http://sendgrid.com/docs/") for e in errors)


def test_content_required_unless_template(sendgrid, outbox):
    body = {"personalizations": [{"to": [{"email": "ana@example.com"}]}],
            "from": {"email": SENDER}, "subject": "Hi"}
    assert [e["field"] for e in bad_request(sendgrid, body)] == ["content"]
    assert sendgrid.send({**body, "template_id": "d-0123"}).status_code == 202


def test_custom_args_are_limited_to_10000_bytes(sendgrid):
    mail = campaign_mail(personalization("ana@example.com", blob="x" * 10_000))
    errors = bad_request(sendgrid, mail)
    assert [e["field"] for e in errors] == ["personalizations.0.custom_args"]


def test_sandbox_mode_answers_200_and_stores_nothing(sendgrid, outbox):
    mail = campaign_mail(personalization("ana@example.com"))
    mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    assert sendgrid.send(mail).status_code == 200
    assert outbox.messages() == []


def test_malformed_json_and_unknown_paths(emulator_url):
    auth = {"Authorization": f"Bearer {CREDENTIALS['sendgrid_api_key']}"}
    response = httpx.post(f"{emulator_url}/v3/mail/send", headers=auth, content=b"{not json")
    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": None, "message": "Bad Request",
                                           "help": None}]}
    response = httpx.get(f"{emulator_url}/v3/templates", headers=auth)
    assert response.status_code == 404
    assert response.json()["errors"][0]["field"] is None


def test_sdk_and_batch_bodies_match_the_published_contract(sendgrid, outbox):
    """What the SDK puts on the wire, and the hook's many-to-a-request body, are valid
    against SendGrid's own mail/send schema."""
    contract = CONTRACTS_DIR / "sendgrid_v3.json"
    if not contract.is_file():
        pytest.skip(f"provider contracts not found at {CONTRACTS_DIR.resolve()}")
    jsonschema = pytest.importorskip("jsonschema")
    spec = json.loads(contract.read_text())
    body_param = next(p for p in spec["paths"]["/mail/send"]["post"]["parameters"]
                      if p["in"] == "body")
    schema = {**body_param["schema"], "definitions": spec["definitions"]}
    # Per-personalization custom_args: the spec types message-level custom_args as a string,
    # although the live API (and the SDK) use an object there.
    mail = campaign_mail(personalization("ana@example.com", program="onboarding", step="welcome",
                                         ledger_id="L-1"))
    batch = batch_body([EmailMessage(
        to=f"{name}@example.com", subject=f"Hi {name}", text=f"Hello {name}",
        html=f"<p>Hello {name}</p>", from_email=SENDER, from_name="Nurture",
        custom_args={"ledger_id": f"L-{name}", "program": "onboarding", "step": "welcome"},
        categories=("onboarding",), headers={"List-Unsubscribe": "<https://u.example/x>"})
        for name in ("ana", "bo")])

    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    for body in (mail.get(), batch):
        validator.validate(body)
        assert sendgrid.client.mail.send.post(request_body=body).status_code == 202
    assert [m["recipient"] for m in outbox.messages()] == [
        "ana@example.com", "ana@example.com", "bo@example.com"]


# The outbox store itself: several writers at once must not lose records.

def test_concurrent_sends_from_threads_are_all_stored(sendgrid, outbox):
    def send(n: int) -> None:
        for i in range(10):
            sendgrid.send(campaign_mail(personalization(f"t{n}-{i}@example.com")))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r["recipient"] for r in outbox.messages()}) == 80


def test_store_concurrent_adds_from_threads_and_processes(tmp_path: Path):
    store = OutboxStore(tmp_path / "outbox.sqlite3")
    plugins = Path(__file__).resolve().parents[2] / "plugins"
    writer = ("import sys; from pathlib import Path; from nurture.emulator import OutboxStore; "
              "s = OutboxStore(Path(sys.argv[1])); "
              "[s.add({'message_id': f'p{sys.argv[2]}-{i}', 'request': {}}) for i in range(50)]")
    processes = [subprocess.Popen([sys.executable, "-c", writer, str(store.path), str(n)],
                                  env={**os.environ, "PYTHONPATH": str(plugins)}) for n in range(2)]
    threads = [threading.Thread(target=lambda n=n: [
        store.add({"message_id": f"t{n}-{i}", "channel": "email", "request": {"i": i}})
        for i in range(50)]) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [p.wait(timeout=30) for p in processes] == [0, 0]

    ids = [r["message_id"] for r in store.messages()]
    assert len(ids) == len(set(ids)) == 400
    assert [i for i in ids if i.startswith("t0-")] == [f"t0-{i}" for i in range(50)]
    store.clear()
    assert store.messages() == []
