"""The SendGrid and Twilio hooks: credentials and base URL from an Airflow connection, sends
through the real SDKs to the provider emulator, every non-2xx a ProviderError.

The connections are AIRFLOW_CONN_* environment variables and no task is running: this is how
`nurture run`, the tests and a local shell use the hooks. The Task SDK's `get_connection`
falls back to the environment-variable secrets backend outside a task (it does not read the
metadata database there).
"""

from __future__ import annotations

import pytest

from nurture.airflow_env import connection_env
from nurture.exceptions import ConfigurationError, ProviderError
from nurture.providers import EmailMessage, SendGridHook, SmsMessage, TwilioHook
from nurture.runner import EMULATOR_CREDENTIALS, EMULATOR_MESSAGING_SERVICE

from .stub_server import StubProvider, closed_port_url

SENDGRID_KEY = EMULATOR_CREDENTIALS["sendgrid_api_key"]
TWILIO_SID = EMULATOR_CREDENTIALS["twilio_account_sid"]
TWILIO_TOKEN = EMULATOR_CREDENTIALS["twilio_auth_token"]
FROM_NUMBER = "+14155550100"


def email(to: str = "ada@example.com") -> EmailMessage:
    return EmailMessage(
        to=to, subject="Welcome, Ada", text="Hello Ada", html="<p>Hello Ada</p>",
        from_email="hello@nurture.example", from_name="Nurture",
        custom_args={"ledger_id": "L-1", "program": "hooks_test", "step": "welcome"},
        categories=("hooks_test",),
    )


def sms(to: str = "+14155550123") -> SmsMessage:
    return SmsMessage(to=to, body="Your account is ready. Reply STOP to opt out.")


@pytest.fixture
def set_connection(monkeypatch):
    """Define an Airflow connection for this test only, as an AIRFLOW_CONN_* variable."""

    def define(conn_id: str, **fields) -> None:
        for key, value in connection_env(conn_id, **fields).items():
            monkeypatch.setenv(key, value)

    return define


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# -- get_connection outside a running task ---------------------------------------------------


def test_get_connection_reads_airflow_conn_env_vars_outside_a_task(set_connection):
    set_connection("hooks_test_conn", conn_type="twilio", host="https://api.example",
                   login="AC1", password="secret-token", extra={"from_number": FROM_NUMBER})

    conn = TwilioHook.get_connection("hooks_test_conn")

    assert (conn.host, conn.login, conn.password) == ("https://api.example", "AC1",
                                                     "secret-token")
    assert conn.extra_dejson == {"from_number": FROM_NUMBER}


def test_get_connection_rereads_the_environment_for_each_new_hook(set_connection):
    set_connection("hooks_test_sg", conn_type="sendgrid", host="https://one.example",
                   password="SG.first-key")
    assert SendGridHook(sendgrid_conn_id="hooks_test_sg").client.host == "https://one.example"

    set_connection("hooks_test_sg", conn_type="sendgrid", host="https://two.example",
                   password="SG.second-key")
    assert SendGridHook(sendgrid_conn_id="hooks_test_sg").client.host == "https://two.example"


def test_an_undefined_connection_is_reported_by_name():
    from airflow.sdk.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException, match="hooks_test_undefined"):
        SendGridHook(sendgrid_conn_id="hooks_test_undefined").send(email())


# -- SendGrid ---------------------------------------------------------------------------------


def test_sendgrid_sends_with_key_and_base_url_from_the_connection(emulator, set_connection):
    base_url, outbox = emulator
    set_connection("hooks_test_sg", conn_type="sendgrid", host=base_url, password=SENDGRID_KEY)

    message_id = SendGridHook(sendgrid_conn_id="hooks_test_sg").send(email())

    [sent] = outbox.messages()
    assert message_id and sent["message_id"] == message_id
    assert (sent["recipient"], sent["sender"], sent["subject"]) == (
        "ada@example.com", "hello@nurture.example", "Welcome, Ada")
    assert (sent["text"], sent["html"]) == ("Hello Ada", "<p>Hello Ada</p>")
    assert sent["request"]["from"] == {"email": "hello@nurture.example", "name": "Nurture"}
    assert sent["request"]["categories"] == ["hooks_test"]
    assert sent["request"]["custom_args"] == {"ledger_id": "L-1", "program": "hooks_test",
                                              "step": "welcome"}


def test_sendgrid_sends_many_to_a_request_grouped_by_sender(emulator, set_connection):
    """Three of one sender in one request (two at most a request: two requests), the other
    sender's alone, and one too big to substitute alone: each message arrives once, as sent."""
    from dataclasses import replace

    base_url, outbox = emulator
    set_connection("hooks_test_sg", conn_type="sendgrid", host=base_url, password=SENDGRID_KEY,
                   extra={"personalizations_per_request": 2})
    messages = [email(f"p{n}@example.com") for n in range(3)] + [
        replace(email("other@example.com"), from_email="news@nurture.example"),
        replace(email("big@example.com"), html="<p>" + "x" * 10_000 + "</p>")]

    ids = SendGridHook(sendgrid_conn_id="hooks_test_sg").send_many(messages)

    sent = {m["recipient"]: m for m in outbox.messages()}
    assert sorted(sent) == sorted(m.to for m in messages)
    assert all(sent[m.to]["message_id"] == ids[i] for i, m in enumerate(messages))
    assert ids[0] == ids[1] and len({ids[0], ids[2], ids[3], ids[4]}) == 4
    assert sent["other@example.com"]["sender"] == "news@nurture.example"
    assert sent["big@example.com"]["html"] == messages[4].html
    assert all(sent[m.to]["text"] == "Hello Ada" for m in messages)


def test_sendgrid_refuses_a_per_request_setting_out_of_range(set_connection):
    set_connection("hooks_test_sg", conn_type="sendgrid", host="https://api.example",
                   password=SENDGRID_KEY, extra={"personalizations_per_request": 0})

    with pytest.raises(ConfigurationError, match="personalizations_per_request"):
        SendGridHook(sendgrid_conn_id="hooks_test_sg").check()


def test_sendgrid_host_without_scheme_takes_schema_and_port(emulator, set_connection):
    base_url, outbox = emulator
    set_connection("hooks_test_sg", conn_type="sendgrid", host="127.0.0.1", schema="http",
                   port=port_of(base_url), password=SENDGRID_KEY)

    message_id = SendGridHook(sendgrid_conn_id="hooks_test_sg").send(email())

    assert [m["message_id"] for m in outbox.messages()] == [message_id]


@pytest.mark.parametrize(("host", "expected"), [
    (None, "https://api.sendgrid.com"),
    ("https://api.eu.sendgrid.com", "https://api.eu.sendgrid.com"),
    ("https://api.eu.sendgrid.com/", "https://api.eu.sendgrid.com"),
])
def test_sendgrid_base_url_defaults_to_sendgrid_and_follows_the_host(set_connection, host,
                                                                    expected):
    set_connection("hooks_test_sg", conn_type="sendgrid", host=host, password=SENDGRID_KEY)

    assert SendGridHook(sendgrid_conn_id="hooks_test_sg").client.host == expected


def test_sendgrid_without_api_key_is_a_configuration_error_naming_the_connection(
        set_connection):
    set_connection("hooks_test_sg", conn_type="sendgrid", host="https://api.example")

    with pytest.raises(ConfigurationError, match="hooks_test_sg.*API key"):
        SendGridHook(sendgrid_conn_id="hooks_test_sg").send(email())


def test_sendgrid_wrong_key_is_a_401_provider_error_with_sendgrids_body(emulator,
                                                                      set_connection):
    base_url, outbox = emulator
    set_connection("hooks_test_sg", conn_type="sendgrid", host=base_url, password="SG.wrong")

    with pytest.raises(ProviderError) as raised:
        SendGridHook(sendgrid_conn_id="hooks_test_sg").send(email())

    assert raised.value.status == 401
    assert not raised.value.ambiguous
    assert "401" in str(raised.value)
    assert "The provided authorization grant is invalid, expired, or revoked" in str(
        raised.value)
    assert outbox.messages() == []


def test_sendgrid_invalid_recipient_is_a_400_provider_error_with_the_field(emulator):
    _, outbox = emulator

    with pytest.raises(ProviderError) as raised:
        SendGridHook().send(email(to="ada@localhost"))  # no dot: SendGrid refuses

    assert raised.value.status == 400
    assert not raised.value.ambiguous
    assert "Does not contain a valid address." in str(raised.value)
    assert "personalizations.0.to.0.email" in str(raised.value)
    assert outbox.messages() == []


# -- Twilio -----------------------------------------------------------------------------------


def test_twilio_sends_through_the_messaging_service_from_the_connection(emulator,
                                                                       set_connection):
    base_url, outbox = emulator
    set_connection("hooks_test_tw", conn_type="twilio", host=base_url, login=TWILIO_SID,
                   password=TWILIO_TOKEN,
                   extra={"messaging_service_sid": EMULATOR_MESSAGING_SERVICE})

    sid = TwilioHook(twilio_conn_id="hooks_test_tw").send(
        SmsMessage(to="+14155550123", body="Hi", status_callback="https://hooks.example/s?x=1"))

    [sent] = outbox.messages()
    assert sid.startswith("SM") and sent["message_id"] == sid
    assert (sent["recipient"], sent["sender"], sent["text"]) == (
        "+14155550123", EMULATOR_MESSAGING_SERVICE, "Hi")
    assert sent["request"]["MessagingServiceSid"] == EMULATOR_MESSAGING_SERVICE
    assert "From" not in sent["request"]
    assert sent["request"]["StatusCallback"] == "https://hooks.example/s?x=1"


def test_twilio_sends_from_a_number_and_host_without_scheme(emulator, set_connection):
    base_url, outbox = emulator
    set_connection("hooks_test_tw", conn_type="twilio", host="127.0.0.1", schema="http",
                   port=port_of(base_url), login=TWILIO_SID, password=TWILIO_TOKEN,
                   extra={"from_number": FROM_NUMBER})

    sid = TwilioHook(twilio_conn_id="hooks_test_tw").send(sms())

    [sent] = outbox.messages()
    assert sent["message_id"] == sid
    assert sent["sender"] == FROM_NUMBER
    assert sent["request"]["From"] == FROM_NUMBER
    assert "StatusCallback" not in sent["request"]


@pytest.mark.parametrize("missing", ["login", "password", "extra"])
def test_twilio_without_sid_token_or_sender_is_a_configuration_error(set_connection, missing):
    fields = {"login": TWILIO_SID, "password": TWILIO_TOKEN,
              "extra": {"messaging_service_sid": EMULATOR_MESSAGING_SERVICE}}
    fields[missing] = {} if missing == "extra" else None
    set_connection("hooks_test_tw", conn_type="twilio", host="https://api.example", **fields)

    with pytest.raises(ConfigurationError, match="hooks_test_tw"):
        TwilioHook(twilio_conn_id="hooks_test_tw").send(sms())


def test_twilio_wrong_token_is_a_401_provider_error_with_twilios_code(emulator,
                                                                    set_connection):
    base_url, outbox = emulator
    set_connection("hooks_test_tw", conn_type="twilio", host=base_url, login=TWILIO_SID,
                   password="wrong-token",
                   extra={"messaging_service_sid": EMULATOR_MESSAGING_SERVICE})

    with pytest.raises(ProviderError) as raised:
        TwilioHook(twilio_conn_id="hooks_test_tw").send(sms())

    assert (raised.value.status, raised.value.code) == (401, "20003")
    assert not raised.value.ambiguous
    assert "Authenticate" in str(raised.value)
    assert outbox.messages() == []


def test_twilio_invalid_number_is_a_400_provider_error_with_twilios_message(emulator):
    _, outbox = emulator

    with pytest.raises(ProviderError) as raised:
        TwilioHook().send(sms(to="555-0100"))

    assert (raised.value.status, raised.value.code) == (400, "21211")
    assert not raised.value.ambiguous
    # Twilio's message quotes the number: it is redacted before it can reach the ledger.
    assert "The 'To' number <phone> is not a valid phone number." in str(raised.value)
    assert "555-0100" not in str(raised.value)
    assert outbox.messages() == []


# -- failures the emulator cannot produce -----------------------------------------------------


def hooks_at(set_connection, url: str, *, timeout: float = 5) -> tuple[SendGridHook,
                                                                        TwilioHook]:
    set_connection("hooks_test_sg", conn_type="sendgrid", host=url, password="SG.stub-key")
    set_connection("hooks_test_tw", conn_type="twilio", host=url, login=TWILIO_SID,
                   password=TWILIO_TOKEN, extra={"from_number": FROM_NUMBER})
    return (SendGridHook(sendgrid_conn_id="hooks_test_sg", timeout=timeout),
            TwilioHook(twilio_conn_id="hooks_test_tw", timeout=timeout))


def test_connection_refused_is_an_unambiguous_provider_error(set_connection):
    sendgrid, twilio = hooks_at(set_connection, closed_port_url())

    for send, message in ((sendgrid.send, email()), (twilio.send, sms())):
        with pytest.raises(ProviderError, match="unreachable") as raised:
            send(message)
        assert raised.value.status is None
        assert not raised.value.ambiguous, "a refused connection never reached the provider"


def test_a_5xx_is_an_ambiguous_provider_error(set_connection):
    with StubProvider(status=500).running() as stub:
        sendgrid, twilio = hooks_at(set_connection, stub.url)
        for send, message in ((sendgrid.send, email()), (twilio.send, sms())):
            with pytest.raises(ProviderError, match="500") as raised:
                send(message)
            assert raised.value.status == 500
            assert raised.value.ambiguous, "the provider may have accepted it before failing"
            assert "Internal Server Error" in str(raised.value)
    assert stub.requests == 2


def test_a_timeout_after_the_request_left_is_an_ambiguous_provider_error(set_connection):
    with StubProvider(delay=3).running() as stub:
        sendgrid, twilio = hooks_at(set_connection, stub.url, timeout=0.3)
        for send, message in ((sendgrid.send, email()), (twilio.send, sms())):
            with pytest.raises(ProviderError) as raised:
                send(message)
            assert raised.value.status is None
            assert raised.value.ambiguous, "the provider received it and may have sent it"
    assert stub.requests == 2


def test_an_answer_cut_off_after_the_request_left_is_an_ambiguous_provider_error(set_connection):
    """The provider got the request and its answer broke off: it may have sent it, so the
    message is unknown (for reconciliation), never a bug and never sent again."""
    with StubProvider(cut_off=True).running() as stub:
        sendgrid, twilio = hooks_at(set_connection, stub.url)
        for send, message in ((sendgrid.send, email()), (twilio.send, sms())):
            with pytest.raises(ProviderError, match="answer was cut off") as raised:
                send(message)
            assert raised.value.status is None
            assert raised.value.ambiguous
    assert stub.requests == 2
