"""SendGrid mail send, one message per request (each is rendered for its recipient).

A 429 (over the account's rate limit) is retried after `X-RateLimit-Reset`: SendGrid
accepted nothing, so the same message goes again (`nurture.providers.pushback`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from urllib.error import URLError

from airflow.sdk import BaseHook

from nurture.exceptions import ConfigurationError, ProviderError
from nurture.providers.pushback import PauseGate, seconds_until_reset
from nurture.redact import redact

DEFAULT_HOST = "https://api.sendgrid.com"


@dataclass(frozen=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    html: str | None
    from_email: str
    from_name: str
    # Maps provider events back to the ledger; ids only, never personal data.
    custom_args: dict[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe


class SendGridHook(BaseHook):
    """Connection `sendgrid_default`: password is the API key, host (optional) the API base
    URL — the emulator locally, `https://api.eu.sendgrid.com` for the EU region."""

    conn_name_attr = "sendgrid_conn_id"
    default_conn_name = "sendgrid_default"
    conn_type = "sendgrid"
    hook_name = "SendGrid"

    def __init__(self, *, sendgrid_conn_id: str = default_conn_name, timeout: float = 30,
                 attempts_when_limited: int = 5, max_wait_s: float = 60) -> None:
        """`attempts_when_limited`: tries of one message while SendGrid answers 429, each
        after the reset it names (at most `max_wait_s` away)."""
        super().__init__()
        self.sendgrid_conn_id = sendgrid_conn_id
        self.timeout = timeout
        self.attempts_when_limited = attempts_when_limited
        self.max_wait_s = max_wait_s
        self._local = threading.local()
        self._gate = PauseGate()

    @cached_property
    def _credentials(self) -> tuple[str, str]:
        conn = self.get_connection(self.sendgrid_conn_id)
        if not conn.password:
            raise ConfigurationError(
                f"connection {self.sendgrid_conn_id} has no API key (its password field)"
            )
        host = conn.host or DEFAULT_HOST
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
        return conn.password, host.rstrip("/")

    def check(self) -> None:
        """Resolve the connection now: fail the task before a batch is claimed."""
        _ = self._credentials

    @property
    def client(self):
        """One SDK client per thread: the dispatcher sends from a thread pool."""
        if not hasattr(self._local, "client"):
            from sendgrid import SendGridAPIClient

            api_key, host = self._credentials
            self._local.client = SendGridAPIClient(api_key=api_key, host=host)
        return self._local.client

    @property
    def _mail_send(self):
        """The SDK's `/v3/mail/send` endpoint for this thread, over a kept-alive connection
        (`nurture.providers.keepalive`)."""
        if not hasattr(self._local, "mail_send"):
            from nurture.providers.keepalive import KeepAliveTransport

            endpoint = self.client.client.mail.send
            endpoint._make_request = KeepAliveTransport(self.client.host, self.timeout)
            self._local.mail_send = endpoint
        return self._local.mail_send

    def send(self, message: EmailMessage) -> str:
        """Send one message; returns SendGrid's X-Message-Id. A 429 is retried after the
        reset SendGrid names, by every thread of this hook; still 429 after
        `attempts_when_limited` tries, it is raised (retryable: nothing was accepted)."""
        from python_http_client.exceptions import HTTPError

        body, attempt = _mail(message), 1
        while True:
            self._gate.wait()
            try:
                return self._post(body)
            except ProviderError as err:
                if err.status != 429 or attempt >= self.attempts_when_limited:
                    raise
                cause = err.__cause__
                headers = cause.headers if isinstance(cause, HTTPError) else None
                self._gate.pause_for(seconds_until_reset(headers or {}, default=1.0,
                                                         cap=self.max_wait_s))
            attempt += 1

    def _post(self, body: dict) -> str:
        from python_http_client.exceptions import HTTPError

        try:
            response = self._mail_send.post(request_body=body, timeout=self.timeout)
        except HTTPError as err:
            status = err.status_code
            raise ProviderError(
                f"SendGrid answered {status}: {redact(_text(err.body))}",
                status=status, ambiguous=status >= 500,
            ) from err
        except URLError as err:  # raised while connecting or sending: nothing was accepted
            raise ProviderError(f"SendGrid unreachable: {err.reason}", status=None) from err
        except OSError as err:  # a timeout or reset while waiting for the answer
            raise ProviderError(f"SendGrid did not answer: {err}", status=None,
                                ambiguous=True) from err
        return response.headers.get("X-Message-Id", "")


def _mail(message: EmailMessage) -> dict:
    """The mail/send body, built by the SDK's helpers."""
    from sendgrid.helpers.mail import Category, CustomArg, From, Header, Mail

    mail = Mail(
        from_email=From(message.from_email, message.from_name),
        to_emails=message.to,
        subject=message.subject,
        plain_text_content=message.text,
        html_content=message.html,
    )
    for key, value in message.custom_args.items():
        mail.add_custom_arg(CustomArg(key, str(value)))
    for category in message.categories:
        mail.add_category(Category(category))
    for key, value in message.headers.items():
        mail.add_header(Header(key, value))
    return mail.get()


def _text(body) -> str:
    return body.decode(errors="replace") if isinstance(body, bytes) else str(body)
