"""One step of a program rendered for one contact, exactly as the dispatcher would send it.

The contact's row is read from the program's audience and goes through the dispatcher's
own `personalize` and `render`. Nothing is sent or stored: unsubscribe and survey links are
signed with a throwaway key, so they have the real shape (and length, which an SMS's
segment count depends on) but act on nobody when clicked, and an SMS's short link gets a
code that resolves to nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nurture import addresses, settings, sms_encoding
from nurture.dispatcher import Dispatch, personalize, render
from nurture.exceptions import NurtureError
from nurture.program import Program, Step
from nurture.templates import Rendered, TemplateProblem, TemplateSet
from nurture.tokens import TokenSigner, generate_key

PREVIEW_SHORT_CODE = "preview-link"  # as long as a real code (links.CODE), stored nowhere


@dataclass(frozen=True)
class Preview:
    program: str
    step: str
    channel: str  # "email" | "sms"
    locale: str  # the template folder used, after fallback
    recipient: str | None  # the address it would go to (a colleague's, for an internal alert)
    subject: str | None
    html: str | None
    text: str  # the plain-text part, or the SMS body
    encoding: str | None  # SMS: "GSM-7" or "UCS-2"
    segments: int | None  # SMS: segments billed


class _NoProvider:
    """Stands in for the provider hooks: a preview never sends."""

    def check(self) -> None:
        raise NurtureError("a preview sends nothing")

    def send(self, message) -> str:
        raise NurtureError("a preview sends nothing")


def rendering_job(program: Program, *, root: Path | None = None,
                  public_url: str | None = None) -> Dispatch:
    """What `personalize` and `render` need, with no provider and a throwaway signing key."""
    return Dispatch(program=program,
                    templates=TemplateSet(root or settings.TEMPLATES_DIR, program.name,
                                          program.default_locale),
                    email=_NoProvider(), sms=_NoProvider(), public_url=public_url,
                    signer=TokenSigner([generate_key()]) if public_url else None)


def render_step(job: Dispatch, step: Step, contact: Mapping[str, Any], locale: str
                ) -> tuple[Rendered, dict[str, Any]]:
    """The message `step` would carry to `contact` in `locale`, and the context it was
    rendered with. Raises TemplateProblem (or what the template's maths raised)."""
    row = {"ledger_id": str(uuid.uuid4()), "contact_id": str(contact.get("contact_id") or "-"),
           "enrollment_id": contact.get("enrollment_id"), "channel": step.channel,
           "step": step.name, "locale": locale}
    short_url = None
    if step.channel == "sms" and step.survey_link and job.public_url and job.signer:
        short_url = f"{job.public_url}/s/{PREVIEW_SHORT_CODE}"
    context = personalize(job, step, row, contact, short_url=short_url)
    return render(job.program, job.templates, step, locale, context), context


def render_preview(conn, program: Program, step_name: str, contact_id: str,
                   locale: str | None = None) -> Preview:
    """`step_name` of `program` for `contact_id`, in `locale` if given, else the locale the
    planner would choose (an internal alert: the program's default)."""
    if step_name not in {step.name for step in program.steps}:
        raise NurtureError(f"program {program.name} has no step {step_name!r}; its steps: "
                           + ", ".join(step.name for step in program.steps))
    step = program.step(step_name)
    contact = _audience_row(conn, program, step, contact_id)
    chosen = _locale(program, step, contact, locale)
    job = rendering_job(program, public_url=settings.public_url())
    try:
        rendered, _ = render_step(job, step, contact, chosen)
    except Exception as err:  # the dispatcher records any of these as a template error
        detail = err if isinstance(err, TemplateProblem) else f"{type(err).__name__}: {err}"
        raise NurtureError(f"{program.name}/{step.name} for {contact_id}: the dispatcher "
                           f"would record a template error: {detail}") from None
    size = sms_encoding.measure(rendered.text) if step.channel == "sms" else None
    recipient = contact.get(step.to or ("email" if step.channel == "email" else "phone"))
    return Preview(program=program.name, step=step.name, channel=step.channel,
                   locale=rendered.locale, recipient=recipient,
                   subject=rendered.subject if step.channel == "email" else None,
                   html=rendered.html, text=rendered.text,
                   encoding=size.encoding if size else None,
                   segments=size.segments if size else None)


def _audience_row(conn, program: Program, step: Step, contact_id: str) -> dict[str, Any]:
    """The contact's audience row; of several (one per webinar, per milestone), the one the
    step is most likely about: its condition met, then the latest anchor."""
    from psycopg2.extras import RealDictCursor

    table = f"marts.{program.audience}"
    with conn.cursor(cursor_factory=RealDictCursor) as cur:
        cur.execute("select to_regclass(%s) is not null as found", (table,))
        if not cur.fetchone()["found"]:
            raise NurtureError(f"{table} does not exist: build it with "
                               f"`nurture dbt build -s +{program.audience}`")
        cur.execute(f"select * from {table} where contact_id = %s", (contact_id,))
        rows = [dict(row) for row in cur]
    if not rows:
        raise NurtureError(f"contact {contact_id!r} is not in {program.name}'s audience "
                           f"({table})")

    def relevance(row: dict[str, Any]) -> tuple[bool, bool, float]:
        met = bool(row.get(step.condition)) if step.condition else True
        anchor = row.get(step.anchor)
        when = anchor.timestamp() if isinstance(anchor, datetime) else 0.0
        return met, anchor is not None, when

    return max(rows, key=relevance)


def _locale(program: Program, step: Step, contact: Mapping[str, Any],
            requested: str | None) -> str:
    value = requested or (None if step.is_internal else contact.get("locale"))
    try:
        return addresses.locale(value, program.default_locale)
    except addresses.Unusable:
        whose = "requested" if requested else f"contact {contact.get('contact_id')}'s"
        raise NurtureError(f"the {whose} locale {value!r} is not a known locale (the planner "
                           "records such a contact unknown_locale)") from None
