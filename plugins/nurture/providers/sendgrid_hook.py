"""SendGrid mail send: one message, or many in one request.

Each message is rendered for its recipient. `send_many` still sends up to
`personalizations_per_request` of them (connection extra; SendGrid allows 1,000) in one
request: a personalization each, with its own recipient, subject, headers and custom_args,
and its rendered bodies as substitutions of a shared content whose blocks are only the
substitution tags. A message whose bodies exceed SendGrid's 10,000 bytes of substitutions per
personalization goes in a request of its own.

A 429 (over the account's rate limit) is retried after `X-RateLimit-Reset`: SendGrid
accepted nothing, so the same request goes again (`nurture.providers.pushback`). A 400
refuses a whole request, so a refused request is sent again message by message, and only the
faulty message fails."""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from functools import cached_property
from urllib.error import URLError

from airflow.sdk import BaseHook

from nurture.exceptions import ConfigurationError, ProviderError
from nurture.providers.pushback import PauseGate, seconds_until_reset
from nurture.redact import redact

DEFAULT_HOST = "https://api.sendgrid.com"
DEFAULT_PER_REQUEST = 100
MAX_PER_REQUEST = 1000  # SendGrid's personalizations per request
MAX_SUBSTITUTIONS_BYTES = 10_000  # per personalization
TEXT_TAG, HTML_TAG = "%nurture_text%", "%nurture_html%"


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
    def _settings(self) -> tuple[str, str, int]:
        conn = self.get_connection(self.sendgrid_conn_id)
        if not conn.password:
            raise ConfigurationError(
                f"connection {self.sendgrid_conn_id} has no API key (its password field)"
            )
        host = conn.host or DEFAULT_HOST
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
        per_request = conn.extra_dejson.get("personalizations_per_request", DEFAULT_PER_REQUEST)
        if not isinstance(per_request, int) or not 1 <= per_request <= MAX_PER_REQUEST:
            raise ConfigurationError(
                f"connection {self.sendgrid_conn_id}: extra personalizations_per_request must "
                f"be a whole number from 1 to {MAX_PER_REQUEST}, not {per_request!r}")
        return conn.password, host.rstrip("/"), per_request

    @property
    def _credentials(self) -> tuple[str, str]:
        return self._settings[:2]

    @property
    def per_request(self) -> int:
        """Messages `send_many` puts in one request."""
        return self._settings[2]

    def check(self) -> None:
        """Resolve the connection now: fail the task before a batch is claimed."""
        _ = self._settings

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
        return self._send_body(_mail(message))

    def send_many(self, messages: list[EmailMessage]) -> list[str | ProviderError]:
        """Send messages `per_request` to a request; returns, for each message in order, the
        X-Message-Id of the request that carried it or the ProviderError that stopped it."""
        results: list[str | ProviderError | None] = [None] * len(messages)
        for request in _requests(messages, self.per_request):
            if len(request) == 1:
                results[request[0]] = self._try(_mail, messages[request[0]])
                continue
            outcome = self._try(batch_body, [messages[i] for i in request])
            if isinstance(outcome, ProviderError) and outcome.status == 400:
                # SendGrid refused the whole request and accepted none of it: find the culprit.
                for i in request:
                    results[i] = self._try(_mail, messages[i])
            else:
                for i in request:
                    results[i] = outcome
        return results

    def _try(self, body_of, messages) -> str | ProviderError:
        try:
            body = body_of(messages)
        except Exception as err:  # e.g. the SDK's helpers cannot parse an address
            # Refused before it left, as SendGrid would refuse it: never sent, never retried.
            return ProviderError(f"SendGrid request not built: {type(err).__name__}: {err}",
                                 status=400, code="invalid_request")
        try:
            return self._send_body(body)
        except ProviderError as err:
            return err

    def _send_body(self, body: dict) -> str:
        from python_http_client.exceptions import HTTPError

        attempt = 1
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
        except http.client.HTTPException as err:  # sent; the answer broke off or was garbled
            raise ProviderError(f"SendGrid's answer was cut off: {err!r}", status=None,
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


def _requests(messages: list[EmailMessage], per_request: int) -> list[list[int]]:
    """Indexes of `messages`, grouped into requests: messages sharing sender, categories and
    content blocks, at most `per_request` together; a message too big to substitute alone."""
    groups: dict[tuple, list[int]] = {}
    requests = []
    for i, message in enumerate(messages):
        if per_request == 1 or _substitutions_bytes(message) > MAX_SUBSTITUTIONS_BYTES:
            requests.append([i])
            continue
        key = (message.from_email, message.from_name, message.categories, message.html is None)
        group = groups.setdefault(key, [])
        group.append(i)
        if len(group) == per_request:
            requests.append(groups.pop(key))
    return requests + list(groups.values())


def _substitutions_bytes(message: EmailMessage) -> int:
    return sum(len(tag.encode()) + len(value.encode()) for tag, value in (
        (TEXT_TAG, message.text), (HTML_TAG, message.html or "")))


def batch_body(messages: list[EmailMessage]) -> dict:
    """One mail/send body for messages of one sender and the same categories: each its own
    personalization, its bodies substituted into content blocks holding only the tags."""
    first = messages[0]
    content = [{"type": "text/plain", "value": TEXT_TAG}]
    if first.html is not None:
        content.append({"type": "text/html", "value": HTML_TAG})
    body = {"from": {"email": first.from_email, "name": first.from_name},
            "subject": first.subject,  # each personalization's own subject overrides it
            "personalizations": [_personalization(message) for message in messages],
            "content": content}
    if first.categories:
        body["categories"] = list(first.categories)
    return body


def _personalization(message: EmailMessage) -> dict:
    substitutions = {TEXT_TAG: message.text}
    if message.html is not None:
        substitutions[HTML_TAG] = message.html
    personalization = {"to": [{"email": message.to}], "subject": message.subject,
                       "substitutions": substitutions}
    if message.custom_args:
        personalization["custom_args"] = {k: str(v) for k, v in message.custom_args.items()}
    if message.headers:
        personalization["headers"] = dict(message.headers)
    return personalization


def _text(body) -> str:
    return body.decode(errors="replace") if isinstance(body, bytes) else str(body)
