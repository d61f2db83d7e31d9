"""`/unsubscribe/{token}`: RFC 8058 one-click for mail clients (POST) and a page for people.

The token (nurture.tokens) names the contact and channel and cannot be forged or read. A
GET only shows a confirmation form — mail scanners fetch links, and must not unsubscribe
anyone — while the form's POST and the mail client's one-click POST record the request.
A POST must be a form (RFC 8058 allows url-encoded or multipart; a client that sends no
Content-Type at all is taken at its word) of at most `MAX_FORM_BYTES`, read no further.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from nurture.tokens import InvalidToken, TokenSigner
from nurture.webhooks import storage

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto;">{body}</body></html>"""
MAX_FORM_BYTES = 4096  # a one-click POST is "List-Unsubscribe=One-Click"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def unsubscribe_router(signer: TokenSigner | None,
                       store: Callable[[Callable[[str, Any], int], Any], int]) -> APIRouter:
    router = APIRouter()

    def claims_or_page(token: str):
        if signer is None:
            return None, _page(503, "Unavailable", "Unsubscribing is not configured here yet.")
        try:
            return signer.verify(token, purpose="unsubscribe"), None
        except InvalidToken:
            return None, _page(404, "Link not valid",
                               "This unsubscribe link is not valid. Use the link in your most "
                               "recent message, or reply to it and we will take you off.")

    @router.get("/unsubscribe/{token}")
    async def confirm(token: str) -> HTMLResponse:
        claims, refusal = claims_or_page(token)
        if refusal:
            return refusal
        what = "emails" if claims.channel == "email" else "text messages"
        return _page(200, "Unsubscribe", (
            f"<h1>Unsubscribe</h1><p>Stop receiving marketing {what} from us?</p>"
            f'<form method="post"><input type="hidden" name="source" value="page">'
            f'<button type="submit">Unsubscribe</button></form>'))

    @router.post("/unsubscribe/{token}")
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        claims, refusal = claims_or_page(token)
        if refusal:
            return refusal
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type and media_type not in FORM_TYPES:
            return _page(400, "Not a form", "<h1>This is not an unsubscribe request</h1>")
        body = await read_capped(request, MAX_FORM_BYTES)
        if body is None:
            return _page(413, "Too large", "<h1>This is not an unsubscribe request</h1>")
        page_form = (media_type == FORM_TYPES[0]
                     and ("source", "page") in parse_qsl(body.decode("utf-8", "replace")))
        source = "page" if page_form else "one_click"
        await run_in_threadpool(store, storage.store_unsubscribe, {
            "token_digest": hashlib.sha256(token.encode()).hexdigest(),
            "contact_id": claims.contact_id, "channel": claims.channel, "source": source,
            "issued_at": claims.issued_at.isoformat(),
        })
        return _page(200, "Unsubscribed", "<h1>You are unsubscribed</h1><p>You will not "
                     "receive these messages any more. It can take up to an hour.</p>")

    return router


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _page(status: int, title: str, body: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)
