"""What the providers do after a send: signed events posted back to the webhook receiver.

Configured with the receiver's base URL (`events_url`); without it nothing is posted and the
emulator behaves as a plain outbox. Events go out from one background thread, after the send
was answered, in order, so a slow or absent receiver never delays or fails a send: a request
that cannot be delivered is retried a few times, then dropped with a warning.

Outcomes follow the recipient, so tests and demos can provoke them (the local part of an
address, the last digits of a number):

    email  bounce…@   processed, bounce (hard: type "bounce")
           dropped…@  dropped (SendGrid drops before processing)
           spam…@     processed, delivered, spamreport
           unsubscribe…@  processed, delivered, unsubscribe
           otherwise  processed, delivered, open, click
    sms    …0003      sent, undelivered (30003)
           …0008      failed (30008)
           otherwise  sent, delivered

SendGrid events are signed as SendGrid signs them (ECDSA P-256 / SHA-256 over the timestamp
header followed by the raw body, base64 of the DER signature); Twilio requests with the
account's auth token over the URL called and the sorted form fields (the twilio SDK's own
`RequestValidator.compute_signature`). Inbound SMS (STOP, START, HELP) can be injected, and
an opted-out number is refused with error 21610 until it sends START, as Twilio does.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)

# The receiver's routes and the providers' header names (nurture.webhooks.app agrees).
SENDGRID_PATH = "/webhooks/sendgrid"
# SendGrid posts events in batches of at most 768 KB (its Event Webhook documentation).
SENDGRID_POST_BYTES = 768_000
TWILIO_INBOUND_PATH = "/webhooks/twilio/inbound"
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TWILIO_SIGNATURE = "X-Twilio-Signature"
TWILIO_API_VERSION = "2010-04-01"

# Twilio's default opt-out management keywords (single-word messages, any case).
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT",
                              "OPTOUT", "REVOKE"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
# The sender Twilio would pick from a Messaging Service's pool (Twilio's "valid from" number).
SERVICE_SENDER = "+15005550006"

_HREF = re.compile(r"""href\s*=\s*["'](https?://[^"']+)["']""", re.IGNORECASE)
_URL = re.compile(r"https?://\S+")
_USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"


def new_event_signing_key() -> tuple[str, str]:
    """A fresh P-256 key pair: (private key PEM for the emulator, public key as SendGrid shows
    it — base64 of the DER SubjectPublicKeyInfo — for the receiver's configuration)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_der = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, base64.b64encode(public_der).decode()


def _load_private_key(private_pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve,
                                                                         ec.SECP256R1):
        raise ValueError("the SendGrid event signing key must be an EC P-256 private key")
    return key


def sign_sendgrid(private_key: ec.EllipticCurvePrivateKey | str, payload: bytes,
                  timestamp: str) -> str:
    """SendGrid's signature: base64 of the DER ECDSA/SHA-256 signature of timestamp + body."""
    if isinstance(private_key, str):
        private_key = _load_private_key(private_key)
    signature = private_key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def sendgrid_body(events: list[dict[str, Any]]) -> bytes:
    """The body as SendGrid posts it: a JSON array, CRLF after each event (never re-serialise
    it before verifying — the signature covers these exact bytes)."""
    items = [json.dumps(event, separators=(",", ":"), ensure_ascii=False) for event in events]
    return ("[" + ",\r\n".join(items) + "]\r\n").encode()


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    return RequestValidator(auth_token).compute_signature(url, dict(params))


def _local_part(email: str) -> str:
    return email.rsplit("@", 1)[0].lower()


def email_outcomes(email: str) -> list[str]:
    """The event types SendGrid reports for a message to this address, in order."""
    local = _local_part(email)
    if local.startswith("bounce"):
        return ["processed", "bounce"]
    if local.startswith("dropped"):
        return ["dropped"]
    if local.startswith("spam"):
        return ["processed", "delivered", "spamreport"]
    if local.startswith("unsubscribe"):
        return ["processed", "delivered", "unsubscribe"]
    return ["processed", "delivered", "open", "click"]


def sms_outcomes(number: str) -> list[tuple[str, int | None]]:
    """(MessageStatus, ErrorCode) of the status callbacks Twilio makes for this recipient."""
    if number.endswith("0003"):
        return [("sent", None), ("undelivered", 30003)]
    if number.endswith("0008"):
        return [("failed", 30008)]
    return [("sent", None), ("delivered", None)]


def _first_link(body: Mapping[str, Any]) -> str:
    content = {block.get("type"): block.get("value") or "" for block in body.get("content") or []
               if isinstance(block, dict)}
    links = _HREF.findall(content.get("text/html", "")) + _URL.findall(content.get("text/plain",
                                                                                   ""))
    links = [link for link in links if "unsubscribe" not in link.lower()]
    return links[0] if links else "https://nurture.example/"


def sendgrid_events(records: list[Mapping[str, Any]],
                    now: float | None = None) -> list[dict[str, Any]]:
    """Every event SendGrid would report for the recipients of one accepted request (its
    outbox records: one per recipient, each with what that recipient received)."""
    timestamp = int(now if now is not None else time.time())
    filter_id = f"filterdrecv-emulator-{secrets.token_hex(4)}-{timestamp:X}"
    events = []
    for recipient, record in enumerate(records):
        body, email, message_id = record["request"], record["recipient"], record["message_id"]
        common = {
            "email": email, "timestamp": timestamp,
            "smtp-id": f"<{message_id}@ismtpd0001p1emu.sendgrid.net>",
            "sg_message_id": f"{message_id}.{filter_id}-{recipient}.0",
        }
        if body.get("categories"):
            common["category"] = list(body["categories"])
        custom_args = body.get("custom_args") or {}  # merged with the personalization's
        for kind in email_outcomes(email):
            events.append({**custom_args, **common, "event": kind,
                           "sg_event_id": secrets.token_urlsafe(16), **_details(kind, body)})
    return events


def event_posts(events: list[dict[str, Any]], max_bytes: int) -> list[list[dict[str, Any]]]:
    """Events split into posts of at most about `max_bytes`, as SendGrid batches them."""
    posts, post, size = [], [], 0
    for event in events:
        length = len(json.dumps(event)) + 3
        if post and size + length > max_bytes:
            posts.append(post)
            post, size = [], 0
        post.append(event)
        size += length
    return posts + ([post] if post else [])


def _details(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "processed":
        return {"send_at": 0}
    if kind == "delivered":
        return {"response": "250 2.0.0 OK", "ip": "192.0.2.10", "tls": 1}
    if kind == "bounce":
        return {"type": "bounce", "bounce_classification": "Invalid Address", "status": "5.1.1",
                "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
                "ip": "192.0.2.10", "tls": 1}
    if kind == "dropped":
        return {"reason": "Bounced Address", "status": "5.0.0"}
    if kind == "open":
        return {"useragent": _USER_AGENT, "ip": "198.51.100.7", "sg_machine_open": False}
    if kind == "click":
        return {"url": _first_link(body), "url_offset": {"index": 0, "type": "html"},
                "useragent": _USER_AGENT, "ip": "198.51.100.7"}
    return {}  # spamreport, unsubscribe


def status_callback_forms(record: Mapping[str, Any], account_sid: str) -> list[dict[str, str]]:
    """The form of each status callback for an accepted SMS, in the order Twilio posts them."""
    request = record["request"]
    sid = record["message_id"]
    base = {"SmsSid": sid, "MessageSid": sid, "AccountSid": account_sid, "To": request["To"],
            "From": request.get("From") or SERVICE_SENDER, "ApiVersion": TWILIO_API_VERSION}
    if request.get("MessagingServiceSid"):
        base["MessagingServiceSid"] = request["MessagingServiceSid"]
    forms = []
    for status, error in sms_outcomes(request["To"]):
        form = {**base, "SmsStatus": status, "MessageStatus": status}
        if error is not None:
            form["ErrorCode"] = str(error)
        if status == "delivered":
            form["RawDlrDoneDate"] = time.strftime("%y%m%d%H%M", time.gmtime())
        forms.append(form)
    return forms


def inbound_form(account_sid: str, from_number: str, to_number: str,
                 body: str) -> dict[str, str]:
    """An incoming SMS as Twilio posts it to the number's messaging webhook."""
    sid = "SM" + secrets.token_hex(16)
    form = {"ToCountry": "US", "ToState": "", "SmsMessageSid": sid, "NumMedia": "0",
            "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "", "SmsStatus": "received",
            "FromCity": "", "Body": body, "FromCountry": "US", "To": to_number, "ToZip": "",
            "NumSegments": "1", "MessageSid": sid, "AccountSid": account_sid,
            "From": from_number, "ApiVersion": TWILIO_API_VERSION}
    if kind := keyword_type(body):
        form["OptOutType"] = kind
    return form


def keyword_type(body: str) -> str | None:
    """STOP / START / HELP when the whole message is one of Twilio's keywords, else None."""
    word = body.strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return "STOP"
    if word in OPT_IN_KEYWORDS:
        return "START"
    if word in HELP_KEYWORDS:
        return "HELP"
    return None


@dataclass
class _Job:
    url: str
    body: bytes
    headers: dict[str, str]
    what: str
    not_before: float = 0.0
    sign: Any = None  # callable(body) -> headers, re-run per attempt (fresh SendGrid timestamp)


class Poster:
    """One background thread posting queued requests in order, with a few retries.

    Connection errors, 5xx and 429 are retried (`retries` times, backoff doubling from
    `backoff_s`); other answers are final. A request that never succeeds is dropped and logged.
    The thread starts with the first request, so an unconfigured emulator runs none.
    """

    def __init__(self, *, retries: int = 3, backoff_s: float = 0.25, delay_s: float = 0.05,
                 timeout_s: float = 5.0) -> None:
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self.delay_s = delay_s  # after the send's answer, as a provider would be
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False

    def submit(self, url: str, body: bytes, headers: dict[str, str], what: str,
               sign: Any = None) -> None:
        with self._idle:
            if self._closed:
                log.warning("emulator: event poster closed; dropped %s", what)
                return
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="emulator-events",
                                                daemon=True)
                self._thread.start()
        self._queue.put(_Job(url, body, headers, what, time.monotonic() + self.delay_s, sign))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far was posted or dropped (True) or timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 2.0) -> None:
        with self._idle:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)  # after what is queued: drain for up to `timeout`
            thread.join(timeout)
            if thread.is_alive():
                log.warning("emulator: closed with %d event request(s) still pending",
                            self._pending)

    def _run(self) -> None:
        # trust_env off: a developer's HTTP(S)_PROXY must not capture calls to a local receiver
        with httpx.Client(timeout=self.timeout_s, trust_env=False) as client:
            while (job := self._queue.get()) is not None:
                try:
                    wait = job.not_before - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    self._post(client, job)
                except Exception:  # never let one request kill the thread
                    log.exception("emulator: posting %s failed", job.what)
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _post(self, client: httpx.Client, job: _Job) -> None:
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            headers = {**job.headers, **(job.sign(job.body) if job.sign else {})}
            try:
                response = client.post(job.url, content=job.body, headers=headers)
            except httpx.HTTPError as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.is_success:
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code != 429:
                    log.warning("emulator: %s refused by %s (%s); dropped", job.what, job.url,
                                problem)
                    return
            log.info("emulator: %s to %s failed (attempt %d, %s)", job.what, job.url,
                     attempt + 1, problem)
        log.warning("emulator: %s to %s dropped after %d attempts (%s)", job.what, job.url,
                    self.retries + 1, problem)


class ProviderEvents:
    """The providers' behaviour after a send: events, callbacks, inbound SMS and opt-outs.

    Opt-outs are tracked per recipient number (as if every sender shared one Messaging
    Service) and in memory, for the life of the emulator.
    """

    def __init__(self, *, events_url: str | None, sendgrid_event_key: str | None,
                 twilio_account_sid: str, twilio_auth_token: str,
                 poster: Poster | None = None) -> None:
        self.events_url = events_url.rstrip("/") if events_url else None
        self._sendgrid_key = _load_private_key(sendgrid_event_key) if sendgrid_event_key else None
        self.account_sid, self.auth_token = twilio_account_sid, twilio_auth_token
        self.poster = poster or Poster()
        self._opted_out: set[str] = set()
        self._last_sender: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.events_url and self._sendgrid_key is None:
            log.warning("emulator: events_url set but no sendgrid_event_key; "
                        "SendGrid events will not be posted")

    @property
    def enabled(self) -> bool:
        return self.events_url is not None

    def opted_out(self, number: str) -> bool:
        with self._lock:
            return number in self._opted_out

    def after_send(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Queue what the providers report about messages just accepted (never raises)."""
        records = list(records)
        for record in records:
            if record.get("channel") == "sms":
                with self._lock:
                    self._last_sender[record["recipient"]] = (record["request"].get("From")
                                                              or SERVICE_SENDER)
        if not self.enabled:
            return
        try:
            self._queue_sendgrid([r for r in records if r.get("channel") == "email"])
            for record in records:
                if record.get("channel") == "sms":
                    self._queue_status_callbacks(record)
        except Exception:
            log.exception("emulator: could not queue provider events")

    def _queue_sendgrid(self, records: list[Mapping[str, Any]]) -> None:
        if not records or self._sendgrid_key is None:
            return
        requests: dict[str, list[Mapping[str, Any]]] = {}
        for record in records:  # one record per recipient
            requests.setdefault(record["message_id"], []).append(record)
        for message_id, recipients in requests.items():
            for events in event_posts(sendgrid_events(recipients), SENDGRID_POST_BYTES):
                self.poster.submit(
                    self.events_url + SENDGRID_PATH, sendgrid_body(events),
                    {"Content-Type": "application/json;charset=utf-8",
                     "User-Agent": "SendGrid Event API"},
                    f"{len(events)} SendGrid events for {message_id}",
                    sign=self._sign_sendgrid)

    def _sign_sendgrid(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {SENDGRID_SIGNATURE: sign_sendgrid(self._sendgrid_key, body, timestamp),
                SENDGRID_TIMESTAMP: timestamp}

    def _queue_status_callbacks(self, record: Mapping[str, Any]) -> None:
        url = record["request"].get("StatusCallback")
        if not url:
            return
        for form in status_callback_forms(record, self.account_sid):
            self._post_twilio(url, form, f"Twilio {form['MessageStatus']} callback for "
                                         f"{form['MessageSid']}")

    def _post_twilio(self, url: str, form: dict[str, str], what: str) -> None:
        self.poster.submit(
            url, urlencode(form).encode(),
            {"Content-Type": "application/x-www-form-urlencoded",
             "User-Agent": "TwilioProxy/1.1",
             TWILIO_SIGNATURE: twilio_signature(self.auth_token, url, form)}, what)

    def inbound(self, from_number: str, body: str, to_number: str | None = None
                ) -> dict[str, Any]:
        """An SMS from `from_number`: applies STOP/START at once, then posts the webhook."""
        kind = keyword_type(body)
        with self._lock:
            if kind == "STOP":
                self._opted_out.add(from_number)
            elif kind == "START":
                self._opted_out.discard(from_number)
            to_number = to_number or self._last_sender.get(from_number, SERVICE_SENDER)
        form = inbound_form(self.account_sid, from_number, to_number, body)
        if self.enabled:
            self._post_twilio(self.events_url + TWILIO_INBOUND_PATH, form,
                              f"Twilio inbound {form['MessageSid']} from {from_number}")
        return {"sid": form["MessageSid"], "from": from_number, "to": to_number,
                "opt_out_type": kind, "posted": self.enabled}

    def close(self) -> None:
        self.poster.close()


def post_inbound(emulator_url: str, body: str, from_number: str,
                 to_number: str | None = None) -> dict[str, Any]:
    """Make a running emulator receive an SMS (e.g. "STOP") from `from_number`."""
    data = {"From": from_number, "Body": body, **({"To": to_number} if to_number else {})}
    response = httpx.post(f"{emulator_url.rstrip('/')}/_emulator/inbound", data=data,
                          timeout=10, trust_env=False)
    response.raise_for_status()
    return response.json()
