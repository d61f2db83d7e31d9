"""SendGrid v3 `POST /v3/mail/send`, validated the way the real endpoint validates.

Messages and fields follow SendGrid's published error table, and all errors in a request are
reported together, as SendGrid does, so code that parses its 400s is exercised for real.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from nurture.emulator.faults import arrival

router = APIRouter()

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#"
MAX_PERSONALIZATIONS = MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = MAX_SUBSTITUTIONS_BYTES = 10_000
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
UNAUTHORIZED = "The provided authorization grant is invalid, expired, or revoked"
_FROM_REQUIRED = (
    "The from object must be provided for every email send. It is an object that requires the "
    "email parameter, but may also contain a name parameter.  e.g. "
    '{"email" : "example@example.com"}  or {"email" : "example@example.com", '
    '"name" : "Example Recipient"}.'
)


def errors_response(status: int, errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status)


def generic_error(status: int, message: str) -> JSONResponse:
    return errors_response(status, [{"field": None, "message": message, "help": None}])


def _error(message: str, field: str | None, anchor: str) -> dict[str, Any]:
    return {"message": message, "field": field, "help": HELP + anchor}


def _valid_email(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 320 and bool(_EMAIL.match(value))


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def validate(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every problem SendGrid would report for this mail/send body (empty list = valid)."""
    errors = _personalization_errors(body.get("personalizations"))
    sender = body.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        errors.append(_error(_FROM_REQUIRED, "from.email", "message.from"))
    elif not _valid_email(sender["email"]):
        errors.append(_error("Does not contain a valid address.", "from.email", "message.from"))
    errors += _subject_errors(body)
    errors += _content_errors(body)
    errors += _custom_args_errors(body)
    errors += _substitution_errors(body)
    return errors


def _personalization_errors(personalizations: Any) -> list[dict[str, Any]]:
    anchor = "-Personalizations-Errors"
    if not isinstance(personalizations, list) or not personalizations:
        return [_error("The personalizations field is required and must have at least one "
                       "personalization.", "personalizations", anchor)]
    if len(personalizations) > MAX_PERSONALIZATIONS:
        return [_error(
            f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations "
            f"per API request. You have provided {len(personalizations)} personalizations. "
            "Please consider splitting this into multiple requests and resending your request.",
            "personalizations", anchor)]
    errors, seen, total, duplicate_reported = [], set(), 0, False
    for i, p in enumerate(personalizations):
        p = p if isinstance(p, dict) else {}
        if not isinstance(p.get("to"), list) or not p["to"]:
            errors.append(_error(
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
                f"personalizations.{i}.to", "message.personalizations.to"))
        for kind in ("to", "cc", "bcc"):
            addresses = p.get(kind) if isinstance(p.get(kind), list) else []
            for j, address in enumerate(addresses):
                total += 1
                email = address.get("email") if isinstance(address, dict) else None
                if not _valid_email(email):
                    errors.append(_error("Does not contain a valid address.",
                                         f"personalizations.{i}.{kind}.{j}.email",
                                         f"message.personalizations.{kind}"))
                elif email.lower() in seen and not duplicate_reported:
                    duplicate_reported = True
                    errors.append(_error(
                        "Each email address in the personalization block should be unique "
                        "between to, cc, and bcc. We found the first duplicate instance of "
                        f"[{email}] in the personalizations.{i}.{kind} field.",
                        f"personalizations.{i}", "message.recipient-errors"))
                else:
                    seen.add(email.lower())
    if total > MAX_RECIPIENTS:
        errors.append(_error(
            f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per request.",
            "personalizations", anchor))
    return errors


def _personalizations(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("personalizations")
    return [p for p in items if isinstance(p, dict)] if isinstance(items, list) else []


def _subject_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    errors, personalizations = [], _personalizations(body)
    where = [("subject", body)] + [
        (f"personalizations.{i}.subject", p) for i, p in enumerate(personalizations)]
    for field, holder in where:
        if holder.get("subject") is not None and not _nonempty_str(holder["subject"]):
            errors.append(_error("The subject of your email must be a string at least one "
                                 "character in length.", field, "message.subject"))
    everywhere = bool(personalizations) and all(
        _nonempty_str(p.get("subject")) for p in personalizations)
    given = body.get("template_id") or body.get("subject") is not None or everywhere
    if not given:
        errors.append(_error(
            "The subject is required. You can get around this requirement if you use a template "
            "with a subject defined or if every personalization has a subject defined.",
            "subject", "message.subject"))
    return errors


def _content_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    content = body.get("content")
    if not isinstance(content, list) or not content:
        if body.get("template_id") and not content:
            return []
        return [_error(
            "Unless a valid template_id is provided, the content parameter is required. There "
            "must be at least one defined content block. We typically suggest both text/plain "
            "and text/html blocks are included, but only one block is required.",
            "content", "message.content")]
    errors = []
    for i, block in enumerate(content):
        block = block if isinstance(block, dict) else {}
        if not _nonempty_str(block.get("type")):
            errors.append(_error("Your content type must be a string with length of at least "
                                 "one character.", f"content.{i}.type", "message.content.type"))
        if not _nonempty_str(block.get("value")):
            errors.append(_error("The content value must be a string at least one character "
                                 "in length.", f"content.{i}.value", "message.content.value"))
    types = [block.get("type") for block in content if isinstance(block, dict)]
    expected = [t for t in ("text/plain", "text/html") if t in types]
    if types[: len(expected)] != expected:
        errors.append(_error(
            "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent "
            "in your email: text/plain needs to be first, followed by text/html, followed by any "
            "other content.", "content", "message.content.value"))
    return errors


def _custom_args_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    errors = []
    where = [("custom_args", body)] + [
        (f"personalizations.{i}.custom_args", p) for i, p in enumerate(_personalizations(body))]
    for field, holder in where:
        args = holder.get("custom_args")
        if args is None:
            continue
        if not isinstance(args, dict):
            errors.append(_error(f"Invalid type. Expected: object, given: {type(args).__name__}.",
                                 field, "message.custom_args"))
        elif not all(isinstance(v, str) for v in args.values()):
            errors.append(_error("All values of custom arguments object must be strings",
                                 field, "message.custom_args"))
    if errors:
        return errors
    for i, p in enumerate(_personalizations(body)):
        if len(json.dumps(merged_custom_args(body, p)).encode()) > MAX_CUSTOM_ARGS_BYTES:
            errors.append(_error(
                "The combined size of both global and personalization custom arguments may not "
                f"exceed {MAX_CUSTOM_ARGS_BYTES:,} bytes per personalization.",
                f"personalizations.{i}.custom_args", "message.custom_args"))
    return errors


def _substitution_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    errors = []
    for i, p in enumerate(_personalizations(body)):
        subs = p.get("substitutions")
        if subs is None:
            continue
        if not isinstance(subs, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in subs.items()):
            errors.append(_error("Substitutions must be an object of string keys and string "
                                 "values.", f"personalizations.{i}.substitutions",
                                 "message.personalizations.substitutions"))
        elif sum(len(k.encode()) + len(v.encode()) for k, v in subs.items()) \
                > MAX_SUBSTITUTIONS_BYTES:
            errors.append(_error(
                f"The total size of substitutions may not exceed {MAX_SUBSTITUTIONS_BYTES:,} "
                "bytes per personalization object.", f"personalizations.{i}.substitutions",
                "message.personalizations.substitutions"))
    return errors


def merged_custom_args(body: dict[str, Any], personalization: dict[str, Any]) -> dict[str, str]:
    """Personalization-level custom_args override message-level ones, key by key."""
    return {**(body.get("custom_args") or {}), **(personalization.get("custom_args") or {})}


def delivered(body: dict[str, Any], personalization: dict[str, Any]) -> dict[str, Any]:
    """What one personalization of a request receives, as a one-personalization body: its
    substitutions made in subject and content, its headers and custom_args merged in. A body
    of one personalization with none of those is returned as it came."""
    view = {**body, "personalizations": [personalization]}
    subs = personalization.get("substitutions") or {}
    if subs:
        view["content"] = [{**block, "value": substitute(block["value"], subs)}
                           for block in body.get("content") or []]
        if personalization.get("subject"):
            view["personalizations"] = [{**personalization, "subject": substitute(
                personalization["subject"], subs)}]
    for key in ("headers", "custom_args"):
        if personalization.get(key):
            view[key] = {**(body.get(key) or {}), **personalization[key]}
    return view


def substitute(text: str, substitutions: dict[str, str]) -> str:
    """Every substitution tag replaced, all in one pass (a value is never searched again)."""
    if not substitutions:
        return text
    tags = re.compile("|".join(re.escape(tag) for tag in sorted(substitutions, key=len,
                                                                  reverse=True)))
    return tags.sub(lambda match: substitutions[match.group(0)], text)


def outbox_records(body: dict[str, Any], message_id: str,
                   received_at: str | None = None) -> list[dict[str, Any]]:
    """One record per `to` recipient of every personalization; its `request` is what that
    personalization receives (`delivered`)."""
    received_at = received_at or datetime.now(UTC).isoformat()
    records = []
    for p in body["personalizations"]:
        view = delivered(body, p)
        content = {block["type"]: block["value"] for block in view.get("content") or []}
        args = merged_custom_args(body, p)
        subject = view["personalizations"][0].get("subject") or body.get("subject")
        for to in p["to"]:
            records.append({
                "message_id": message_id, "channel": "email", "recipient": to["email"],
                "sender": body["from"]["email"], "subject": subject,
                "text": content.get("text/plain"), "html": content.get("text/html"),
                "program": args.get("program"), "step": args.get("step"),
                "ledger_id": args.get("ledger_id"), "received_at": received_at, "request": view,
            })
    return records


def _sandbox_mode(body: dict[str, Any]) -> bool:
    settings = body.get("mail_settings")
    sandbox = settings.get("sandbox_mode") if isinstance(settings, dict) else None
    return isinstance(sandbox, dict) and sandbox.get("enable") is True


@router.post("/v3/mail/send")
async def mail_send(request: Request) -> Response:
    expected = f"Bearer {request.app.state.sendgrid_api_key}".encode()
    if not secrets.compare_digest(request.headers.get("authorization", "").encode(), expected):
        return generic_error(401, UNAUTHORIZED)
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return generic_error(400, "Bad Request")
    if errors := validate(body):
        return errors_response(400, errors)
    if _sandbox_mode(body):
        return Response(status_code=200)  # valid, but SendGrid delivers nothing in sandbox mode
    message_id = secrets.token_urlsafe(16)  # 22 url-safe characters, like SendGrid's
    await request.app.state.accept(outbox_records(body, message_id, arrival(request)))
    return Response(status_code=202, headers={"X-Message-Id": message_id})
