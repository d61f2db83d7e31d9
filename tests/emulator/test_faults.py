"""The emulator's latency and faults (nurture.emulator.faults), over real HTTP: each fault
does what its docstring says, chosen deterministically, and the outbox shows whether the
message was accepted."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import httpx
import pytest

from .conftest import CREDENTIALS

ACCOUNT_SID = CREDENTIALS["twilio_account_sid"]
MAIL = {"personalizations": [{"to": [{"email": "ada@example.com"}]}],
        "from": {"email": "hello@nurture.example"}, "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hello"}]}
SMS = {"To": "+14155552671", "From": "+15005550006", "Body": "Hello"}


@pytest.fixture
def faults(emulator_url: str, outbox):
    """Set the emulator's fault plan for this test; healthy again afterwards."""

    def set_plan(plan: dict) -> dict:
        response = httpx.post(f"{emulator_url}/_emulator/faults", json=plan)
        assert response.status_code == 200, response.text
        return response.json()

    yield set_plan
    httpx.delete(f"{emulator_url}/_emulator/faults").raise_for_status()


def send_mail(url: str, *, timeout: float = 10) -> httpx.Response:
    return httpx.post(f"{url}/v3/mail/send", json=MAIL, timeout=timeout,
                      headers={"Authorization": f"Bearer {CREDENTIALS['sendgrid_api_key']}"})


def send_sms(url: str, *, timeout: float = 10) -> httpx.Response:
    return httpx.post(f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", data=SMS,
                      auth=(ACCOUNT_SID, CREDENTIALS["twilio_auth_token"]), timeout=timeout)


def counts(url: str) -> dict:
    return httpx.get(f"{url}/_emulator/faults").json()["counts"]


def test_the_plan_is_set_shown_and_cleared_at_runtime(emulator_url, faults):
    shown = faults({"latency_s": 0.05, "faults": [{"kind": "error_503", "every": 4,
                                                   "provider": "twilio"}]})
    assert shown["plan"]["latency_s"] == 0.05
    assert shown["plan"]["faults"][0] | {"kind": "error_503", "every": 4} == shown["plan"][
        "faults"][0]
    assert httpx.get(f"{emulator_url}/_emulator/faults").json()["plan"] == shown["plan"]
    cleared = httpx.delete(f"{emulator_url}/_emulator/faults").json()
    assert cleared["plan"]["faults"] == [] and cleared["plan"]["latency_s"] == 0


@pytest.mark.parametrize(("plan", "complaint"), [
    ({"faults": [{"kind": "explode", "every": 1}]}, "unknown fault kind"),
    ({"faults": [{"kind": "drop"}]}, "exactly one of every, first, probability"),
    ({"faults": [{"kind": "drop", "every": 0}]}, "every must be at least 1"),
    ({"faults": [{"kind": "drop", "every": 1, "when": "now"}]}, "unknown field"),
    ({"latency": 1}, "unknown fault plan fields: latency"),
    ({"sendgrid_rate_per_s": 0}, "sendgrid_rate_per_s must be a whole number"),
])
def test_a_bad_plan_is_refused_with_a_reason_and_the_old_one_stays(emulator_url, faults, plan,
                                                                   complaint):
    faults({"latency_s": 0.01})
    response = httpx.post(f"{emulator_url}/_emulator/faults", json=plan)
    assert response.status_code == 400
    assert complaint in response.json()["error"]
    assert httpx.get(f"{emulator_url}/_emulator/faults").json()["plan"]["latency_s"] == 0.01


def test_latency_delays_every_answer_and_arrival_is_stamped_before_it(emulator_url, outbox,
                                                                      faults):
    faults({"latency_s": 0.4})
    before = time.time()
    started = time.perf_counter()
    assert send_mail(emulator_url).status_code == 202
    assert send_sms(emulator_url).status_code == 201
    assert time.perf_counter() - started >= 0.8

    arrivals = [datetime.fromisoformat(m["received_at"]).timestamp()
                for m in outbox.messages()]
    assert len(arrivals) == 2
    assert before <= arrivals[0] < before + 0.35  # stamped on arrival, not after the wait
    assert arrivals[1] - arrivals[0] >= 0.4  # the second left after the first's answer


def test_sendgrid_answers_429_with_its_rate_limit_headers_over_the_limit(emulator_url,
                                                                         outbox, faults):
    faults({"sendgrid_rate_per_s": 2})
    with httpx.Client(headers={"Authorization": f"Bearer {CREDENTIALS['sendgrid_api_key']}"},
                      timeout=10) as client:
        answers = [client.post(f"{emulator_url}/v3/mail/send", json=MAIL) for _ in range(8)]

    windows: dict[int, list[httpx.Response]] = {}
    for answer in answers:  # a window is the second its reset ends
        assert answer.headers["X-RateLimit-Limit"] == "2"
        windows.setdefault(int(answer.headers["X-RateLimit-Reset"]), []).append(answer)
    for reset, in_window in windows.items():
        statuses = [a.status_code for a in in_window]
        assert statuses == [202, 202, 429, 429, 429, 429, 429, 429][:len(statuses)], reset
        assert [a.headers["X-RateLimit-Remaining"] for a in in_window][:2] == ["1", "0"][
            :len(in_window)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, "eight requests in a row, at most two a second, and none refused"
    assert limited[0].json() == {"errors": [{"field": None, "message": "too many requests"}]}
    assert len(outbox.messages()) == 8 - len(limited)
    assert counts(emulator_url)["sendgrid_rate_limited"] == len(limited)


def test_twilio_answers_20429_above_its_concurrency(emulator_url, outbox, faults):
    faults({"twilio_max_concurrent": 2, "latency_s": 0.5})
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(send_sms(emulator_url)))
               for _ in range(5)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # all five arrive while the first two are in flight
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [201, 201, 429, 429, 429]
    refused = [a.json() for a in answers if a.status_code == 429]
    assert {(r["code"], r["status"], r["message"]) for r in refused} == {
        (20429, 429, "Too Many Requests")}
    assert len(outbox.messages()) == 2


def test_every_nth_request_fails_with_the_providers_own_error_and_is_not_stored(
        emulator_url, outbox, faults):
    faults({"faults": [{"kind": "error_500", "every": 2, "provider": "sendgrid"},
                       {"kind": "error_503", "every": 3, "provider": "twilio"}]})

    mail = [send_mail(emulator_url).status_code for _ in range(4)]
    sms = [send_sms(emulator_url) for _ in range(3)]

    assert mail == [202, 500, 202, 500]
    assert [a.status_code for a in sms] == [201, 201, 503]
    assert sms[-1].json()["code"] == 20503
    assert len(outbox.messages()) == 4


def test_first_n_and_seeded_probability_choose_the_same_requests_every_time(emulator_url,
                                                                            faults):
    faults({"faults": [{"kind": "too_many_requests", "first": 2}]})
    assert [send_mail(emulator_url).status_code for _ in range(3)] == [429, 429, 202]

    runs = []
    for _ in range(2):
        faults({"faults": [{"kind": "error_503", "probability": 0.5, "seed": 11}]})
        runs.append([send_mail(emulator_url).status_code for _ in range(12)])
    assert runs[0] == runs[1]
    assert {202, 503} == set(runs[0])  # some of each


def test_reset_breaks_the_connection_and_nothing_is_stored(emulator_url, outbox, faults):
    faults({"faults": [{"kind": "reset", "every": 1}]})
    for send in (send_mail, send_sms):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            send(emulator_url)
    assert outbox.messages() == []
    assert counts(emulator_url)["reset"] == 2


def test_drop_stores_the_message_and_never_answers(emulator_url, outbox, faults):
    faults({"faults": [{"kind": "drop", "every": 1}]})
    for send in (send_mail, send_sms):
        with pytest.raises(httpx.RemoteProtocolError):
            send(emulator_url)
    assert [m["channel"] for m in outbox.messages()] == ["email", "sms"]


def test_slow_stores_the_message_and_answers_after_the_clients_timeout(emulator_url, outbox,
                                                                       faults):
    faults({"faults": [{"kind": "slow", "every": 1, "delay_s": 2}]})
    with pytest.raises(httpx.ReadTimeout):
        send_mail(emulator_url, timeout=0.3)
    assert len(outbox.messages()) == 1
    assert send_mail(emulator_url, timeout=5).status_code == 202  # answered, late
