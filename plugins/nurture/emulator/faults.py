"""Faults and latency for the provider emulator: a provider that is slow, pushes back or breaks.

A `FaultPlan` says how the emulated providers misbehave. Give it when the app is made
(`create_app(..., faults=FaultPlan(...))`, `nurture emulator` through `serve`) or change it
while the emulator runs, as JSON:

    POST   /_emulator/faults   {"latency_s": 0.1, "sendgrid_rate_per_s": 100,
                                "twilio_max_concurrent": 10,
                                "faults": [{"kind": "error_503", "every": 10}]}
    GET    /_emulator/faults   the plan in force and what it did so far (`counts`)
    DELETE /_emulator/faults   healthy again, counters reset

Only the send endpoints (`POST /v3/mail/send`, `POST /2010-04-01/Accounts/…/Messages.json`)
are affected. Every request first waits `latency_s` (an asyncio sleep: a thousand slow
requests in flight cost no CPU), then:

- `sendgrid_rate_per_s`: SendGrid's rate limit, in fixed one-second windows of the wall
  clock. Every mail-send answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
  `X-RateLimit-Reset` (Unix seconds when the window ends), as SendGrid documents; a request
  over the limit gets 429 `too many requests` and nothing is stored.
- `twilio_max_concurrent`: Twilio's concurrency limit. A request arriving while that many are
  in flight (latency included) gets 429 with error 20429 (Too Many Requests); nothing stored.
- `faults`: rules, each `{"kind": ..., "provider": "sendgrid" | "twilio" | null (both),
  "every": N | "first": N | "probability": p, "seed": s, "delay_s": d}`, chosen
  deterministically so tests repeat: `every` hits the Nth, 2Nth... request the rule matches,
  `first` the first N, `probability` a seeded pseudo-random share. The first rule that hits
  a request decides; every rule counts every request it matches (requests the two limits
  above refused never reach the rules). Setting a plan resets every counter. Kinds:

    error_500, error_503  answered in the provider's error shape; nothing stored
    too_many_requests     SendGrid's 429 (rate-limit headers, reset at the next second) or
                          Twilio's 429 / 20429; nothing stored
    reset                 the request is read, then the connection is reset (RST): nothing
                          stored, and the client cannot tell whether it was
    drop                  the message is accepted and stored, then the connection closes
                          without an answer: the ambiguous case
    slow                  the message is accepted and stored, and answered `delay_s` (default
                          30) later — past the client's timeout

The client of a `reset` and of a `drop` sees the same thing (the connection broke after its
request left); only the outbox tells them apart. Each stored message's `received_at` is when
its request arrived (before the latency), so a test can check a send rate from the outbox.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

KINDS = ("error_500", "error_503", "too_many_requests", "reset", "drop", "slow")
PROVIDERS = ("sendgrid", "twilio")
DEFAULT_SLOW_S = 30.0


@dataclass(frozen=True)
class Fault:
    """One rule: what happens (`kind`) to which requests (`every`, `first` or
    `probability` with `seed`), on one provider or both."""

    kind: str
    provider: str | None = None
    every: int | None = None
    first: int | None = None
    probability: float | None = None
    seed: int = 0
    delay_s: float = DEFAULT_SLOW_S

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.provider not in (None, *PROVIDERS):
            raise ValueError(f"provider must be one of {PROVIDERS} or null, not {self.provider!r}")
        chosen = [n for n in ("every", "first", "probability") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError(f"{self.kind}: give exactly one of every, first, probability")
        if (self.every is not None and self.every < 1) or (self.first is not None
                                                          and self.first < 0):
            raise ValueError(f"{self.kind}: every must be at least 1 and first at least 0")
        if self.probability is not None and not 0 <= self.probability <= 1:
            raise ValueError(f"{self.kind}: probability must be between 0 and 1")


@dataclass(frozen=True)
class FaultPlan:
    """How the emulated providers misbehave; the default is a healthy, instant provider."""

    latency_s: float = 0.0
    sendgrid_rate_per_s: int | None = None
    twilio_max_concurrent: int | None = None
    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.latency_s < 0:
            raise ValueError("latency_s must not be negative")
        for name in ("sendgrid_rate_per_s", "twilio_max_concurrent"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number of at least 1, or null")

    @classmethod
    def from_json(cls, data: Any) -> FaultPlan:
        """Parse a plan; ValueError says what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError("the fault plan must be a JSON object")
        unknown = set(data) - {"latency_s", "sendgrid_rate_per_s", "twilio_max_concurrent",
                               "faults"}
        if unknown:
            raise ValueError(f"unknown fault plan fields: {', '.join(sorted(unknown))}")
        rules = data.get("faults") or []
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise ValueError("faults must be a list of objects")
        try:
            faults = tuple(Fault(**rule) for rule in rules)
        except TypeError as err:
            raise ValueError(f"a fault rule has an unknown field: {err}") from None
        return cls(latency_s=float(data.get("latency_s") or 0.0),
                   sendgrid_rate_per_s=data.get("sendgrid_rate_per_s"),
                   twilio_max_concurrent=data.get("twilio_max_concurrent"), faults=faults)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"faults": [asdict(f) for f in self.faults]}


class FaultState:
    """The plan in force and its counters, shared by every request of one emulator (one
    event loop, so no locks: nothing here awaits between reading and writing a counter)."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.set(plan or FaultPlan())

    def set(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.matched = [0] * len(plan.faults)
        self.randoms = [random.Random(f.seed) for f in plan.faults]
        self.window, self.window_count = 0, 0
        self.twilio_in_flight = 0
        self.counts: Counter[str] = Counter()

    def pick(self, provider: str) -> Fault | None:
        """The fault that hits this request, if any; every matching rule counts it."""
        hit = None
        for i, fault in enumerate(self.plan.faults):
            if fault.provider not in (None, provider):
                continue
            self.matched[i] += 1
            n = self.matched[i]
            hits = ((fault.every is not None and n % fault.every == 0)
                    or (fault.first is not None and n <= fault.first)
                    or (fault.probability is not None
                        and self.randoms[i].random() < fault.probability))
            if hits and hit is None:
                hit = fault
        return hit

    def sendgrid_window(self, now: float) -> tuple[bool, dict[str, str]]:
        """Count a mail-send request in the current one-second window: (allowed, headers)."""
        limit = self.plan.sendgrid_rate_per_s
        if limit is None:
            return True, {}
        window = int(now)
        if window != self.window:
            self.window, self.window_count = window, 0
        self.window_count += 1
        headers = {"X-RateLimit-Limit": str(limit),
                   "X-RateLimit-Remaining": str(max(0, limit - self.window_count)),
                   "X-RateLimit-Reset": str(window + 1)}
        return self.window_count <= limit, headers

    def report(self) -> dict[str, Any]:
        return {"plan": self.plan.to_json(), "counts": dict(self.counts)}


def arrival(request) -> str:
    """When a request arrived (stamped before any latency), ISO 8601: a stored message's
    `received_at`."""
    arrived = getattr(request.state, "arrived_at", None)
    return (datetime.fromtimestamp(arrived, UTC) if arrived else datetime.now(UTC)).isoformat()


def provider_of(scope: dict) -> str | None:
    """Which provider's send endpoint a request is for; None for anything else."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path = scope["path"]
    if path == "/v3/mail/send":
        return "sendgrid"
    if path.startswith("/2010-04-01/Accounts/") and path.endswith("/Messages.json"):
        return "twilio"
    return None


class FaultInjector:
    """Wraps the emulator's ASGI app: stamps each request's arrival, applies the plan."""

    def __init__(self, state: FaultState) -> None:
        self.state = state

    async def __call__(self, scope, receive, send, app) -> None:
        provider = provider_of(scope)
        if provider is None:
            return await app(scope, receive, send)
        arrived = time.time()
        scope.setdefault("state", {})["arrived_at"] = arrived
        state = self.state
        plan = state.plan
        state.counts[f"{provider}_requests"] += 1
        if provider == "sendgrid":
            allowed, headers = state.sendgrid_window(arrived)
            if plan.latency_s:
                await asyncio.sleep(plan.latency_s)
            if not allowed:
                state.counts["sendgrid_rate_limited"] += 1
                return await _answer(send, *_too_many("sendgrid", headers))
            return await self._apply(provider, scope, receive, _with_headers(send, headers), app)
        if plan.twilio_max_concurrent and state.twilio_in_flight >= plan.twilio_max_concurrent:
            if plan.latency_s:
                await asyncio.sleep(plan.latency_s)
            state.counts["twilio_concurrency_rejected"] += 1
            return await _answer(send, *_too_many("twilio", {}))
        state.twilio_in_flight += 1
        try:
            if plan.latency_s:
                await asyncio.sleep(plan.latency_s)
            await self._apply(provider, scope, receive, send, app)
        finally:
            state.twilio_in_flight -= 1

    async def _apply(self, provider: str, scope, receive, send, app) -> None:
        fault = self.state.pick(provider)
        if fault is None:
            return await app(scope, receive, send)
        self.state.counts[fault.kind] += 1
        if fault.kind in ("error_500", "error_503"):
            return await _answer(send, *_server_error(provider, int(fault.kind[-3:])))
        if fault.kind == "too_many_requests":
            reset = {"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0",
                     "X-RateLimit-Reset": str(int(time.time()) + 1)}
            return await _answer(send, *_too_many(provider, reset))
        if fault.kind == "reset":
            await _read_body(receive)
            return _break_connection(send, reset=True)
        if fault.kind == "drop":
            await app(scope, receive, _swallow)
            return _break_connection(send, reset=False)
        # slow: accepted now, answered too late
        answer: list[dict] = []

        async def hold(message: dict) -> None:
            answer.append(message)

        await app(scope, receive, hold)
        await asyncio.sleep(fault.delay_s)
        for message in answer:
            await send(message)


def _server_error(provider: str, status: int) -> tuple[int, dict[str, str], dict]:
    phrase = "Internal Server Error" if status == 500 else "Service Unavailable"
    if provider == "twilio":
        return status, {}, {"code": 20000 + status, "message": phrase,
                            "more_info": f"https://www.twilio.com/docs/errors/{20000 + status}",
                            "status": status}
    return status, {}, {"errors": [{"field": None, "message": phrase, "help": None}]}


def _too_many(provider: str, headers: dict[str, str]) -> tuple[int, dict[str, str], dict]:
    if provider == "twilio":
        return 429, {}, {"code": 20429, "message": "Too Many Requests",
                         "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}
    return 429, headers, {"errors": [{"field": None, "message": "too many requests"}]}


async def _answer(send, status: int, headers: dict[str, str], body: dict) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"),
           (b"content-length", str(len(payload)).encode()),
           *((k.lower().encode(), v.encode()) for k, v in headers.items())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def _with_headers(send, headers: dict[str, str]):
    """`send` adding `headers` to the response start (SendGrid's rate-limit headers)."""
    if not headers:
        return send
    extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def sending(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    sending.__self__ = getattr(send, "__self__", None)  # type: ignore[attr-defined]
    return sending


async def _read_body(receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _swallow(message: dict) -> None:
    """The answer of a dropped request goes nowhere."""


def _break_connection(send, *, reset: bool) -> None:
    """Close the client's connection without an answer: an RST (`reset`) or a plain close.

    The transport belongs to the server (uvicorn's request cycle is `send`'s owner); the
    cycle is marked disconnected so the server does not answer with its own 500."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("this ASGI server gives no access to the connection to break")
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    cycle.disconnected = True
