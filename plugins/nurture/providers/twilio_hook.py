"""Twilio Programmable Messaging: one request per SMS."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from airflow.sdk import BaseHook

from nurture.exceptions import ConfigurationError, ProviderError
from nurture.redact import redact


@dataclass(frozen=True)
class SmsMessage:
    to: str
    body: str
    status_callback: str | None = None


class TwilioHook(BaseHook):
    """Connection `twilio_default`: login is the Account SID, password the auth token, host
    (optional) the API base URL; extra holds `messaging_service_sid` or `from_number`."""

    conn_name_attr = "twilio_conn_id"
    default_conn_name = "twilio_default"
    conn_type = "twilio"
    hook_name = "Twilio"

    def __init__(self, *, twilio_conn_id: str = default_conn_name, timeout: float = 30) -> None:
        super().__init__()
        self.twilio_conn_id = twilio_conn_id
        self.timeout = timeout
        self._local = threading.local()

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
        return {"sid": conn.login, "token": conn.password, "host": host, **sender}

    def check(self) -> None:
        """Resolve the connection now: fail the task before a batch is claimed."""
        _ = self._settings

    @property
    def client(self):
        """One SDK client (and HTTP session) per dispatcher thread."""
        if not hasattr(self._local, "client"):
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            settings = self._settings
            client = Client(settings["sid"], settings["token"],
                            http_client=TwilioHttpClient(timeout=self.timeout))
            if settings["host"]:
                client.api.base_url = settings["host"].rstrip("/")
            self._local.client = client
        return self._local.client

    def send(self, message: SmsMessage) -> str:
        """Send one SMS; returns the message SID."""
        import requests
        from twilio.base.exceptions import TwilioRestException

        settings = self._settings
        sender = (
            {"messaging_service_sid": settings["messaging_service_sid"]}
            if "messaging_service_sid" in settings
            else {"from_": settings["from_number"]}
        )
        options = {"status_callback": message.status_callback} if message.status_callback else {}
        try:
            created = self.client.messages.create(to=message.to, body=message.body,
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
        return created.sid


def _never_left(err) -> bool:
    """Connecting failed (refused, DNS, connect timeout): Twilio never saw the request."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(err, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return isinstance(reason, NewConnectionError)
