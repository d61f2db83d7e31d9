"""`/survey/{token}`: the satisfaction survey's page, one NPS question and a comment.

The token (nurture.tokens, purpose "survey") names the contact, the channel, the survey
(the ledger id of the message that carried the link) and what triggered it. A GET only
shows the form — mail scanners fetch links and must not answer for anyone — and may
pre-select a score (`?score=7`) so an email can offer 0–10 buttons that open the page filled
in. The form's POST stores the answer; answering again replaces the earlier answer.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from nurture.tokens import InvalidToken, TokenClaims, TokenSigner
from nurture.webhooks import storage
from nurture.webhooks.unsubscribe import PAGE, read_capped

PURPOSE = "survey"
MAX_COMMENT_CHARS = 2000
# A 2,000-character comment of 4-byte characters, percent-encoded, is 24,000 bytes.
MAX_FORM_BYTES = 64 * 1024
QUESTION = "How likely are you to recommend us to a friend or colleague?"
SCORE_MESSAGE = "The score must be a whole number from 0 to 10."
COMMENT_MESSAGE = f"The comment must be at most {MAX_COMMENT_CHARS:,} characters long."
_SCORE = re.compile(r"[0-9]|10")
# Pages carry the token in their URL: keep them out of caches and other sites' logs.
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def survey_url(signer: TokenSigner, public_url: str, *, contact_id: str, channel: str,
               survey_id: str, trigger: str, score: int | None = None) -> str:
    """The link to put in a survey message; `score` pre-selects an answer on the page."""
    token = signer.issue(PURPOSE, contact_id, channel, survey_id=survey_id, trigger=trigger)
    url = f"{public_url.rstrip('/')}/survey/{token}"
    if score is None:
        return url
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
        raise ValueError(f"score must be an integer from 0 to 10, not {score!r}")
    return f"{url}?score={score}"


def survey_router(signer: TokenSigner | None,
                  store: Callable[[Callable[[str, Any], int], Any], int]) -> APIRouter:
    router = APIRouter()

    def claims_or_page(token: str) -> tuple[TokenClaims | None, HTMLResponse | None]:
        if signer is None:
            return None, _page(503, "Unavailable", "Surveys are not configured here yet.")
        try:
            claims = signer.verify(token, purpose=PURPOSE)
        except InvalidToken:
            claims = None
        if claims is None or not claims.extra.get("survey_id") or not claims.extra.get("trigger"):
            # One answer for every refusal: the visitor learns nothing about which check failed.
            return None, _page(404, "Link not valid",
                               "<h1>This link is not valid</h1><p>This survey link is not valid "
                               "or has expired. Thank you for wanting to answer.</p>")
        return claims, None

    @router.get("/survey/{token}")
    async def survey_form(token: str, score: str | None = None) -> HTMLResponse:
        _, refusal = claims_or_page(token)
        if refusal:
            return refusal
        return _form(200, _valid_score(score))

    @router.post("/survey/{token}")
    async def answer(token: str, request: Request) -> HTMLResponse:
        claims, refusal = claims_or_page(token)
        if refusal:
            return refusal
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/x-www-form-urlencoded":
            return _form(400, None, error="Please answer using the form on this page.")
        body = await read_capped(request, MAX_FORM_BYTES)
        if body is None:
            return _page(413, "Answer too long", f"<h1>Your answer is too long</h1><p>"
                         f"{html.escape(COMMENT_MESSAGE)} Please go back and shorten it.</p>")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return _form(400, None, error="Please answer using the form on this page.")
        fields: dict[str, list[str]] = {}
        for name, value in pairs:
            fields.setdefault(name, []).append(value)
        comments = fields.get("comment", [])
        # PostgreSQL text cannot hold NUL; browsers send a textarea's line breaks as CRLF.
        comment = (comments[0].replace("\x00", "").replace("\r\n", "\n").strip()
                   if len(comments) == 1 else "")
        scores = fields.get("score", [])
        score = _valid_score(scores[0]) if len(scores) == 1 else None
        if score is None:
            return _form(400, None, comment, error=SCORE_MESSAGE)
        if len(comments) > 1 or len(comment) > MAX_COMMENT_CHARS:
            return _form(400, score, comment, error=COMMENT_MESSAGE)
        await run_in_threadpool(store, storage.store_survey_response, {
            "survey_id": claims.extra["survey_id"], "trigger": claims.extra["trigger"],
            "contact_id": claims.contact_id, "channel": claims.channel,
            "score": score, "comment": comment or None, "issued_at": claims.issued_at,
        })
        said = (f"<p>Your comment:</p><blockquote>{html.escape(comment)}</blockquote>"
                if comment else "")
        return _page(200, "Thank you", (
            f"<h1>Thank you</h1><p>You answered {score} out of 10.</p>{said}"
            f'<p><a href="?score={score}">Change your answer</a></p>'))

    return router


def _valid_score(value: str | None = None) -> int | None:
    return int(value) if value is not None and _SCORE.fullmatch(value) else None


def _form(status: int, score: int | None, comment: str = "", *,
          error: str | None = None) -> HTMLResponse:
    alert = (f'<p id="survey-error" role="alert"><strong>{html.escape(error)}</strong></p>'
             if error else "")
    described = ' aria-describedby="survey-error"' if error else ""
    options = "".join(
        f'<label style="display: inline-block; margin: 0 .4em .4em 0;">'
        f'<input type="radio" name="score" value="{n}" required'
        f'{" checked" if n == score else ""}> {n}</label>'
        for n in range(11))
    return _page(status, "Survey", (
        f"<h1>{html.escape(QUESTION)}</h1>{alert}"
        f'<form method="post"><fieldset{described}>'
        f"<legend>Choose a score from 0 (not at all likely) to 10 (extremely likely)</legend>"
        f"{options}</fieldset>"
        f'<p><label for="comment">What is the main reason for your score? (optional)</label>'
        f'<br><textarea id="comment" name="comment" rows="5" cols="40" '
        f'maxlength="{MAX_COMMENT_CHARS}">{html.escape(comment)}</textarea></p>'
        f'<button type="submit">Send</button></form>'))


def _page(status: int, title: str, body: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status,
                        headers=_HEADERS)
