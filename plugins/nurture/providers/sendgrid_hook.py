"""SendGrid mail send, one message per request (each is rendered for its recipient)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from urllib.error import URLError

from airflow.sdk import BaseHook

from nurture.exceptions import ConfigurationError, ProviderError
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

    def __init__(self, *, sendgrid_conn_id: str = default_conn_name, timeout: float = 30) -> None:
        super().__init__()
        self.sendgrid_conn_id = sendgrid_conn_id
        self.timeout = timeout
        self._local = threading.local()

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

    def send(self, message: EmailMessage) -> str:
        """Send one message; returns SendGrid's X-Message-Id."""
        from python_http_client.exceptions import HTTPError
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
        try:
            response = self.client.client.mail.send.post(
                request_body=mail.get(), timeout=self.timeout
            )
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


def _text(body) -> str:
    return body.decode(errors="replace") if isinstance(body, bytes) else str(body)
