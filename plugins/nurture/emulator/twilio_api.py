"""Twilio `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, with Twilio's error codes.

Returns the Message resource as Twilio does on create (201), so the real twilio SDK parses it,
and counts segments the way carriers do, so cost and length checks see realistic numbers.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from nurture.emulator.faults import arrival
from nurture.sms_encoding import measure

router = APIRouter()

API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_SHORT_CODE = re.compile(r"^\d{3,8}$")
_ALPHANUMERIC_ID = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")

def num_segments(body: str) -> int:
    """SMS segments as carriers count them (`nurture.sms_encoding`); an empty body is one."""
    return max(1, measure(body).segments)


def twilio_error(status: int, code: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else None
    return JSONResponse(
        {"code": code, "message": message,
         "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
        status_code=status, headers=headers)


def _authenticated(request: Request, account_sid: str) -> bool:
    """Basic auth as AccountSid:AuthToken, and the URL's account must be the caller's."""
    state = request.app.state
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:  # bad base64 or bad UTF-8
        return False
    return (scheme.lower() == "basic"
            and secrets.compare_digest(user.encode(), state.twilio_account_sid.encode())
            and secrets.compare_digest(password.encode(), state.twilio_auth_token.encode())
            and account_sid == user)


def validate(form: dict[str, str]) -> tuple[int, str] | None:
    """The first (code, message) Twilio would answer with, or None when the request is valid."""
    to, sender = form.get("To", ""), form.get("From", "")
    service, body = form.get("MessagingServiceSid", ""), form.get("Body", "")
    if not to:
        return 21604, "A 'To' phone number is required."
    if not _E164.match(to):
        return 21211, f"The 'To' number {to} is not a valid phone number."
    if not sender and not service:
        return 21603, "A 'From' phone number is required."
    if service and not _MESSAGING_SERVICE_SID.match(service):
        return 21705, f"The Messaging Service Sid {service} is invalid."
    if sender and not any(p.match(sender) for p in (_E164, _SHORT_CODE, _ALPHANUMERIC_ID)):
        return 21212, (f"The 'From' number {sender} is not a valid phone number, shortcode, "
                       "or alphanumeric sender ID.")
    if not body:
        return 21602, "Message body is required."
    if len(body) > MAX_BODY_CHARS:
        return 21617, "The concatenated message body exceeds the 1600 character limit."
    return None


def message_resource(account_sid: str, form: dict[str, str]) -> dict[str, Any]:
    """The Message resource as Twilio returns it right after create."""
    sid = "SM" + secrets.token_hex(16)
    now = format_datetime(datetime.now(UTC))  # RFC 2822, "+0000"
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    sender, service = form.get("From") or None, form.get("MessagingServiceSid") or None
    return {
        "account_sid": account_sid, "api_version": API_VERSION, "body": form["Body"],
        "date_created": now, "date_sent": None, "date_updated": now,
        "direction": "outbound-api", "error_code": None, "error_message": None,
        "from": sender, "messaging_service_sid": service, "num_media": "0",
        # Through a Messaging Service the sender (hence the encoding) is chosen later: "0".
        "num_segments": str(num_segments(form["Body"])) if sender else "0",
        "price": None, "price_unit": None, "sid": sid,
        "status": "accepted" if service else "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"}, "to": form["To"],
        "uri": f"{uri}.json",
    }


def outbox_record(message: dict[str, Any], form: dict[str, str],
                  received_at: str | None = None) -> dict[str, Any]:
    """program/step/ledger_id ride on the StatusCallback URL's query string."""
    query = parse_qs(urlsplit(form.get("StatusCallback", "")).query)
    tag = {key: query.get(key, [None])[0] for key in ("program", "step", "ledger_id")}
    return {
        "message_id": message["sid"], "channel": "sms", "recipient": message["to"],
        "sender": message["from"] or message["messaging_service_sid"], "subject": None,
        "text": message["body"], "html": None, **tag,
        "received_at": received_at or datetime.now(UTC).isoformat(), "request": form,
    }


@router.post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json")
async def create_message(account_sid: str, request: Request) -> JSONResponse:
    if not _authenticated(request, account_sid):
        return twilio_error(401, 20003, "Authenticate")
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"),
                          keep_blank_values=True))
    if error := validate(form):
        return twilio_error(400, *error)
    if request.app.state.events.opted_out(form["To"]):  # the recipient replied STOP
        return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
    message = message_resource(account_sid, form)
    await request.app.state.accept([outbox_record(message, form, arrival(request))])
    return JSONResponse(message, status_code=201)
