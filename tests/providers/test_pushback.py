"""The hooks honour the providers' pushback — SendGrid 429 with `X-RateLimit-Reset`, Twilio
429 / 20429 — by sending the same message again, once it is accepted never again; and keep
an SMS sender's configured rate across all threads. Real SDKs against the emulator, its
faults set over its control endpoint."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest

from nurture.bench.dispatch import max_in_window
from nurture.exceptions import ConfigurationError, ProviderError
from nurture.providers import SendGridHook, TwilioHook
from nurture.runner import EMULATOR_CREDENTIALS, EMULATOR_MESSAGING_SERVICE

from .test_hooks import email, sms


@pytest.fixture
def faults(emulator):
    url, _ = emulator

    def set_plan(plan: dict) -> None:
        httpx.post(f"{url}/_emulator/faults", json=plan).raise_for_status()

    yield set_plan
    httpx.delete(f"{url}/_emulator/faults").raise_for_status()


def counts(url: str) -> dict:
    return httpx.get(f"{url}/_emulator/faults").json()["counts"]


def test_sendgrid_429_waits_for_the_reset_and_sends_the_message_once(emulator, faults):
    url, outbox = emulator
    faults({"faults": [{"kind": "too_many_requests", "first": 2}]})

    started = time.time()
    message_id = SendGridHook().send(email())

    [sent] = outbox.messages()
    assert sent["message_id"] == message_id
    assert counts(url) == {"sendgrid_requests": 3, "too_many_requests": 2}
    # Each 429 named the next second as its reset: the retries waited for it.
    assert time.time() - started >= 1 - (started % 1)


def test_sendgrid_rate_limit_slows_every_thread_and_loses_nothing(emulator, faults):
    url, outbox = emulator
    faults({"sendgrid_rate_per_s": 4})
    hook = SendGridHook()
    recipients = [f"person{i}@example.com" for i in range(12)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(lambda to: hook.send(email(to=to)), recipients))

    messages = outbox.messages()
    assert sorted(m["recipient"] for m in messages) == sorted(recipients)
    assert sorted(m["message_id"] for m in messages) == sorted(ids)
    assert counts(url)["sendgrid_rate_limited"] >= 1


def test_sendgrid_still_limited_after_its_attempts_is_a_retryable_error(emulator, faults):
    url, outbox = emulator
    faults({"faults": [{"kind": "too_many_requests", "every": 1}]})

    with pytest.raises(ProviderError) as raised:
        SendGridHook(attempts_when_limited=3).send(email())

    assert raised.value.status == 429 and raised.value.retryable
    assert "too many requests" in str(raised.value)
    assert counts(url)["sendgrid_requests"] == 3
    assert outbox.messages() == []


def test_twilio_20429_backs_off_and_sends_the_message_once(emulator, faults):
    url, outbox = emulator
    faults({"faults": [{"kind": "too_many_requests", "first": 2, "provider": "twilio"}]})

    sid = TwilioHook(backoff_base_s=0.05).send(sms())

    assert [m["message_id"] for m in outbox.messages()] == [sid]
    assert counts(url) == {"twilio_requests": 3, "too_many_requests": 2}


def test_twilio_concurrency_limit_is_absorbed_without_loss_or_duplicates(emulator, faults):
    url, outbox = emulator
    faults({"twilio_max_concurrent": 2, "latency_s": 0.1})
    hook = TwilioHook(backoff_base_s=0.1, attempts_when_limited=10)
    numbers = [f"+1415555{i:04d}" for i in range(10)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda to: hook.send(sms(to=to)), numbers))

    assert sorted(m["recipient"] for m in outbox.messages()) == numbers
    assert counts(url)["twilio_concurrency_rejected"] >= 1


def test_twilio_still_limited_after_its_attempts_is_a_retryable_error(emulator, faults):
    url, outbox = emulator
    faults({"faults": [{"kind": "too_many_requests", "every": 1, "provider": "twilio"}]})

    with pytest.raises(ProviderError) as raised:
        TwilioHook(attempts_when_limited=3, backoff_base_s=0.01).send(sms())

    assert (raised.value.status, raised.value.code) == (429, "20429")
    assert raised.value.retryable
    assert counts(url)["twilio_requests"] == 3
    assert outbox.messages() == []


@pytest.fixture
def sms_rate(monkeypatch):
    """Give twilio_default (wherever it points) a sender rate."""
    import os

    from nurture.airflow_env import connection_env

    def set_rate(rate) -> None:
        host = json.loads(os.environ["AIRFLOW_CONN_TWILIO_DEFAULT"])["host"]
        for key, value in connection_env(
                "twilio_default", conn_type="twilio", host=host,
                login=EMULATOR_CREDENTIALS["twilio_account_sid"],
                password=EMULATOR_CREDENTIALS["twilio_auth_token"],
                extra={"messaging_service_sid": EMULATOR_MESSAGING_SERVICE,
                       "messages_per_second": rate}).items():
            monkeypatch.setenv(key, value)

    return set_rate


def test_sms_from_many_threads_never_exceed_the_senders_rate(emulator_apart, sms_rate):
    _, outbox = emulator_apart
    sms_rate(8)
    hook = TwilioHook()

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: hook.send(sms(to=f"+1415555{i:04d}")), range(28)))

    arrivals = sorted(datetime.fromisoformat(m["received_at"]).timestamp()
                      for m in outbox.messages())
    assert len(arrivals) == 28
    gaps = [round(1000 * (b - a)) for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert max_in_window(arrivals, 1.0) <= 8, f"more than the rate in a second: gaps {gaps} ms"


@pytest.mark.parametrize("rate", ["fast", 0, -2, True])
def test_a_bad_sms_rate_is_a_configuration_error_naming_the_connection(emulator, sms_rate,
                                                                      rate):
    sms_rate(rate)
    with pytest.raises(ConfigurationError, match="twilio_default.*messages_per_second"):
        TwilioHook().check()


def test_max_in_window_counts_a_half_open_second():
    assert max_in_window([], 1.0) == 0
    assert max_in_window([0.0, 0.5, 0.99, 1.0], 1.0) == 3  # 0.0 and 1.0: a second apart
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.2], 1.0) == 4
    assert max_in_window([0.0, 1.0, 2.0, 3.0], 1.0) == 1
