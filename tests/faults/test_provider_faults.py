"""The providers misbehave: slow answers, rate limits, 5xx, resets, and the ambiguous case
where the message was accepted and the answer lost (emulator faults, nurture.emulator.faults).

Pushback (SendGrid 429 with X-RateLimit-Reset, Twilio 429 / 20429) is waited out and
retried: everything goes out once. A request that broke after it left is `unknown`, never
re-sent; the ones the provider did accept are proved sent by their events (reconcile)."""

from __future__ import annotations

import httpx
import pytest

from nurture import catalog, tasks

pytestmark = pytest.mark.e2e


def _set_faults(url: str, plan: dict) -> None:
    httpx.post(f"{url}/_emulator/faults", json=plan, timeout=10).raise_for_status()


def test_pushback_is_waited_out_and_everything_goes_out_once(scenario):
    with scenario.providers() as providers:
        _set_faults(providers.url, {"latency_s": 0.05, "sendgrid_rate_per_s": 20,
                                    "twilio_max_concurrent": 2})
        result = scenario.run()
        pushed_back = httpx.get(f"{providers.url}/_emulator/faults", timeout=10).json()
        providers.wait_for_events()
    counts = scenario.check("provider pushback: SendGrid 429, Twilio 20429, 50 ms latency")

    assert result.state == "success"
    assert sum(pushed_back["counts"].values()) > 0, pushed_back  # the limits did bite
    assert counts.problems() == []
    assert counts.unknown == 0
    assert counts.messages == result.summary["sent"] > 0


def test_broken_answers_are_unknown_never_resent_and_reconciled(scenario):
    faults = [{"kind": "error_503", "every": 7}, {"kind": "reset", "every": 11},
              {"kind": "drop", "every": 5}, {"kind": "too_many_requests", "every": 9}]
    with scenario.providers() as providers:
        _set_faults(providers.url, {"latency_s": 0.02, "faults": faults})
        first = scenario.run()
        _set_faults(providers.url, {})  # healthy again: the next run must not re-send
        second = scenario.run()
        providers.wait_for_events()
    tasks.prepare(catalog.program("onboarding"))  # the next run's first task: reconcile
    counts = scenario.check("provider faults: 503, reset, answer lost, 429")

    assert first.state == "success" and second.state == "success"
    assert counts.problems() == []
    assert counts.reconciled > 0  # dropped answers: accepted, proved sent by their events
    assert counts.unknown_sent == 0  # every accepted one was reconciled
    assert counts.unknown > 0  # 503s and resets: nothing proves either way, never re-sent
    assert second.summary["sent"] == 0
