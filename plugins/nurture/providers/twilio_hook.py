"""Twilio Programmable Messaging: one request per SMS.

A sender may send only so many messages a second (a long code about 1, a short code 100;
Twilio queues or rejects the rest): the connection's `messages_per_second` extra sets the
rate, and every thread of the hook keeps to it together. A 429 (error 20429, too many
concurrent requests) is retried after a jittered, growing backoff: Twilio accepted nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from airflow.sdk import BaseHook

from nurture.exceptions import ConfigurationError, ProviderError
from nurture.providers.pushback import SendRateLimiter, backoff_seconds
from nurture.redact import redact


class RateLimiter(Protocol):
    def acquire(self) -> None: ...


@dataclass(frozen=True)
class SmsMessage:
    to: str
    body: str
    status_callback: str | None = None


class TwilioHook(BaseHook):
    """Connection `twilio_default`: login is the Account SID, password the auth token, host
    (optional) the API base URL; extra holds `messaging_service_sid` or `from_number`, and
    optionally `messages_per_second`, the sender's rate (none: as fast as Twilio answers)."""

    conn_name_attr = "twilio_conn_id"
    default_conn_name = "twilio_default"
    conn_type = "twilio"
    hook_name = "Twilio"

    def __init__(self, *, twilio_conn_id: str = default_conn_name, timeout: float = 30,
                 attempts_when_limited: int = 6, backoff_base_s: float = 0.2,
                 backoff_cap_s: float = 5,
                 shared_limiter: Callable[[str, float], RateLimiter] | None = None) -> None:
        """`attempts_when_limited`: tries of one SMS while Twilio answers 429, waiting about
        `backoff_base_s`, then twice as long each time (at most `backoff_cap_s`).
        `shared_limiter(sender, per_second)`: a limiter that holds the sender's rate across
        processes (`nurture.send_rate`); without it, this hook's threads keep it together."""
        super().__init__()
        self.twilio_conn_id = twilio_conn_id
        self.timeout = timeout
        self.attempts_when_limited = attempts_when_limited
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._local = threading.local()
        self._limiter_lock = threading.Lock()
        self.shared_limiter = shared_limiter

    @cached_property
    def _settings(self) -> dict:
        conn = self.get_connection(self.twilio_conn_id)
        extra = conn.extra_dejson
        sender = {k: extra[k] for k in ("messaging_service_sid", "from_number") if extra.get(k)}
        if not (conn.login and conn.password and sender):
            raise ConfigurationError(
                f"connection {self.twilio_conn_id} needs login (Account SID), password (auth "
                "token) and extra messaging_service_sid or from_number"
            )
        host = conn.host
        if host and "://" not in host:
            host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
        rate = _positive_number(extra.get("messages_per_second"))
        if rate is False:
            raise ConfigurationError(
                f"connection {self.twilio_conn_id}: messages_per_second must be a positive "
                f"number, not {extra['messages_per_second']!r}")
        return {"sid": conn.login, "token": conn.password, "host": host, "rate": rate, **sender}

    @cached_property
    def _limiter(self) -> RateLimiter | None:
        """One limiter for every thread: the sender's rate holds for them together."""
        with self._limiter_lock:
            settings = self._settings
            if not settings["rate"]:
                return None
            if self.shared_limiter is None:
                return SendRateLimiter(settings["rate"])
            sender = settings.get("messaging_service_sid") or settings["from_number"]
            return self.shared_limiter(f"twilio:{settings['sid']}:{sender}", settings["rate"])

    def check(self) -> None:
        """Resolve the connection now: fail the task before a batch is claimed."""
        _ = self._settings, self._limiter

    @property
    def client(self):
        """One SDK client (and HTTP session) per dispatcher thread."""
        if not hasattr(self._local, "client"):
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            settings = self._settings
            # The SDK logs every request and response at INFO: thousands of lines a batch.
            quiet = logging.getLogger("twilio.http_client.nurture")
            quiet.setLevel(logging.WARNING)
            client = Client(settings["sid"], settings["token"],
                            http_client=TwilioHttpClient(timeout=self.timeout, logger=quiet))
            if settings["host"]:
                client.api.base_url = settings["host"].rstrip("/")
            _ = client.messages  # the SDK imports and builds this lazily: now, not in a slot
            if self._limiter is not None:
                _connect_ahead(client, settings["host"] or "https://api.twilio.com")
            self._local.client = client
        return self._local.client

    def send(self, message: SmsMessage) -> str:
        """Send one SMS at the sender's rate; returns the message SID. A 429 is retried
        after a backoff (each try keeps to the rate too); still 429 after
        `attempts_when_limited` tries, it is raised (retryable: nothing was accepted)."""
        attempt = 1
        while True:
            try:
                return self._create(message)
            except ProviderError as err:
                if err.status != 429 or attempt >= self.attempts_when_limited:
                    raise
            time.sleep(backoff_seconds(attempt, base=self.backoff_base_s,
                                       cap=self.backoff_cap_s))
            attempt += 1

    def _create(self, message: SmsMessage) -> str:
        import requests
        from twilio.base.exceptions import TwilioRestException

        settings = self._settings
        sender = (
            {"messaging_service_sid": settings["messaging_service_sid"]}
            if "messaging_service_sid" in settings
            else {"from_": settings["from_number"]}
        )
        options = {"status_callback": message.status_callback} if message.status_callback else {}
        client = self.client  # made before the slot is taken: a new thread's first send
        if self._limiter is not None:
            self._limiter.acquire()  # as close to the request as can be
        try:
            created = client.messages.create(to=message.to, body=message.body,
                                             **sender, **options)
        except TwilioRestException as err:
            raise ProviderError(
                f"Twilio answered {err.status} (error {err.code}): {redact(str(err.msg))}",
                status=err.status, code=str(err.code) if err.code else None,
                ambiguous=err.status >= 500,
            ) from err
        except requests.ConnectionError as err:
            if _never_left(err):
                raise ProviderError(f"Twilio unreachable: {err}", status=None) from err
            raise ProviderError(f"Twilio did not answer: {err}", status=None,
                                ambiguous=True) from err
        except requests.Timeout as err:  # a read timeout: the request was sent
            raise ProviderError(f"Twilio timed out: {err}", status=None, ambiguous=True) from err
        except (requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as err:  # sent; the answer broke off
            raise ProviderError(f"Twilio's answer was cut off: {err}", status=None,
                                ambiguous=True) from err
        return created.sid


def _connect_ahead(client, base_url: str) -> None:
    """Open this thread's connection now, so that its setup (slow on a busy machine) never
    delays a request inside its rate slot, letting the next slot's catch up with it. Best
    effort: a failure here is the first send's to report."""
    try:
        adapter = client.http_client.session.get_adapter(base_url)
        pool = adapter.poolmanager.connection_from_url(base_url)
        conn = pool._get_conn()
        conn.connect()
        pool._put_conn(conn)
    except Exception:  # an optimisation only: the send itself reports any failure
        return


def _positive_number(value) -> float | None | bool:
    """None when unset, the number when it is a positive one (a string of digits too, as a
    connection's extra may hold it), False otherwise."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number if number > 0 and not isinstance(value, bool) else False


def _never_left(err) -> bool:
    """Connecting failed (refused, DNS, connect timeout): Twilio never saw the request."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(err, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return isinstance(reason, NewConnectionError)
