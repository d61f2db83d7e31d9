"""The SDKs, sending through the hooks with every logger at DEBUG, log neither the API key
nor the message: `nurture.redact` (which the hooks import) keeps their loggers above it."""

from __future__ import annotations

import logging

import pytest

from nurture.airflow_env import connection_env
from nurture.providers import EmailMessage, SendGridHook, SmsMessage, TwilioHook
from nurture.redact import SDK_LOGGERS
from nurture.runner import EMULATOR_CREDENTIALS, EMULATOR_MESSAGING_SERVICE

RECIPIENT, PHONE = "ada.lovelace@example.com", "+14155550123"


@pytest.fixture
def hooks(emulator, monkeypatch):
    url, outbox = emulator
    env = {
        **connection_env("sendgrid_default", conn_type="sendgrid", host=url,
                         password=EMULATOR_CREDENTIALS["sendgrid_api_key"]),
        **connection_env("twilio_default", conn_type="twilio", host=url,
                         login=EMULATOR_CREDENTIALS["twilio_account_sid"],
                         password=EMULATOR_CREDENTIALS["twilio_auth_token"],
                         extra={"messaging_service_sid": EMULATOR_MESSAGING_SERVICE}),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return SendGridHook(), TwilioHook(), outbox


def test_sends_at_debug_log_no_key_and_no_recipient(hooks, caplog):
    sendgrid, twilio, outbox = hooks
    with caplog.at_level(logging.DEBUG):
        logging.getLogger().setLevel(logging.DEBUG)
        sendgrid.send(EmailMessage(to=RECIPIENT, subject="Hi Ada", text="Secret plan",
                                   html="<p>Secret plan</p>", from_email="hello@nurture.example",
                                   from_name="Nurture", custom_args={}, categories=()))
        twilio.send(SmsMessage(to=PHONE, body="Secret plan. Reply STOP to opt out."))
    assert len(outbox.messages()) == 2  # both went out
    logged = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    secrets = (EMULATOR_CREDENTIALS["sendgrid_api_key"], EMULATOR_CREDENTIALS["twilio_auth_token"])
    for value in (*secrets, RECIPIENT, PHONE, "Secret plan"):  # the Account SID is no secret
        assert value not in logged


def test_a_level_set_higher_is_kept():
    from nurture.redact import quiet_sdk_loggers

    logger = logging.getLogger("python_http_client")
    before = logger.level
    try:
        logger.setLevel(logging.ERROR)
        quiet_sdk_loggers()
        assert logger.level == logging.ERROR
        logger.setLevel(logging.NOTSET)
        quiet_sdk_loggers()
        assert logger.level == SDK_LOGGERS["python_http_client"]
    finally:
        logger.setLevel(before)
