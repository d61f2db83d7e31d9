"""Slowing down for a provider: its pushback (429) and our own per-sender send rate.

A 429 means the provider accepted nothing, so the same message is simply sent again, after
the wait the provider asked for (SendGrid's `X-RateLimit-Reset`) or a growing, jittered
backoff (Twilio's 20429, too many concurrent requests). Retries are bounded: a message still
refused becomes the usual retryable ProviderError and goes back to `planned`.

These objects live on a hook, which the dispatcher's threads share, so they are thread-safe.
"""

from __future__ import annotations

import random
import threading
import time

# Pace SMS this far under the configured rate: the time between our send and the provider's
# clock varies from request to request (a new connection, a busy machine), and must never
# push a second over the limit: 4.5% absorbs up to 47 ms of such jitter (a request that
# arrives late beside one that does not), and keeps the rate within 5% of the limit.
RATE_HEADROOM = 0.955


class PauseGate:
    """When one thread hears "slow down until T", every thread of the hook waits for T before
    its next request, instead of each finding out with a 429 of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resume_at = 0.0  # time.monotonic()

    def pause_for(self, seconds: float) -> None:
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def wait(self) -> None:
        delay = self._resume_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def seconds_until_reset(headers, *, default: float, cap: float) -> float:
    """The wait SendGrid's `X-RateLimit-Reset` (Unix seconds) asks for, within [0, cap], plus
    up to 10% jitter so threads that waited together do not all return in the same instant."""
    try:
        wait = float(headers.get("X-RateLimit-Reset")) - time.time()
    except (TypeError, ValueError, AttributeError):
        wait = default
    wait = min(max(wait, 0.0), cap)
    return wait + random.uniform(0, 0.1 * max(wait, 0.1))


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to `base`, then doubling."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2 ** (attempt - 1))


class SendRateLimiter:
    """At most `per_second` requests a second from all threads of one process.

    Requests leave on a schedule one interval (1 / (per_second × RATE_HEADROOM)) apart: each
    takes the next free slot, and after an idle spell the schedule restarts from now (no
    burst to catch up). A thread that woke late does not move the later slots, so the average
    rate holds, but the next request still leaves at least 90% of an interval after it
    (`MIN_SPACING`): lateness is caught up gently, never as two requests at once."""

    MIN_SPACING = 0.9

    def __init__(self, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("a send rate must be positive")
        self.per_second = per_second
        self.interval = 1.0 / (per_second * RATE_HEADROOM)
        self._lock = threading.Lock()
        self._next_slot = float("-inf")  # time.monotonic()
        self._last_left = float("-inf")

    def acquire(self) -> None:
        """Block until this thread may send (threads wait their turn on the lock)."""
        with self._lock:
            slot = max(self._next_slot, time.monotonic(),
                       self._last_left + self.MIN_SPACING * self.interval)
            delay = slot - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._last_left = time.monotonic()
            self._next_slot = slot + self.interval
