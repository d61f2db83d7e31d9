"""Send one batch of planned messages: render, call the provider, settle the ledger.

Throughput comes from concurrency, not a faster loop: providers answer in tens to hundreds
of milliseconds, so a batch goes out over a bounded thread pool, and email goes many
messages to a request where the hook allows (`SendGridHook.send_many`). Ledger writes are
one statement per chunk. Anything that goes wrong with one message is that message's outcome,
never the batch's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Protocol
from urllib.parse import urlencode

from nurture import ledger, links
from nurture.exceptions import ProviderError, ProviderUnavailable
from nurture.program import Program, Step
from nurture.providers import EmailMessage, SmsMessage
from nurture.templates import Rendered, TemplateProblem, TemplateSet
from nurture.tokens import TokenSigner


class ProviderHook(Protocol):
    """A provider hook: `check` fails before anything is claimed (a missing connection or
    key would otherwise strand a whole batch as `unknown`); `send` returns the provider's id.
    A hook that sends several messages a request also has `per_request` and
    `send_many(messages)`, which returns each message's id or ProviderError in order."""

    def check(self) -> None: ...

    def send(self, message) -> str: ...


log = logging.getLogger(__name__)

CLAIM_FACTOR = 4  # rows claimed at once per thread: few in flight if the worker dies


@dataclass(frozen=True)
class Dispatch:
    """What one batch needs besides its rows."""

    program: Program
    templates: TemplateSet
    email: ProviderHook
    sms: ProviderHook
    public_url: str | None = None
    concurrency: int = 16
    signer: TokenSigner | None = None  # with public_url: unsubscribe links and headers
    # Consent as it is now (contact_id, has_email_consent, has_sms_consent): dbt's view over
    # the raw consent events, read per chunk on top of the audience table built before the plan.
    live_consent: str = "intermediate.int_consents_pivoted_to_contacts"


class SteadyTemplates(TemplateSet):
    """A program's templates as they stand when a batch starts: each template's locale
    folder and version are looked up once, and compiled templates are not checked against
    the disk again, rather than once per message (a batch renders thousands)."""

    def __init__(self, templates: TemplateSet) -> None:
        super().__init__(templates.root, templates.program, templates.default_locale)
        self._locales: dict[tuple[str, str], str] = {}
        self._versions: dict[tuple[str, str], str] = {}

    @cached_property
    def env(self):
        return super().env.overlay(auto_reload=False)

    def resolve_locale(self, template: str, locale: str) -> str:
        key = (template, locale)
        if key not in self._locales:  # a race computes it twice, to the same answer
            self._locales[key] = super().resolve_locale(template, locale)
        return self._locales[key]

    def version(self, template: str, locale: str) -> str:
        key = (template, locale)
        if key not in self._versions:
            self._versions[key] = super().version(template, locale)
        return self._versions[key]


@dataclass
class _Chunk:
    """Claimed rows whose sends are under way."""

    rows: list[dict]
    sends: list[Future]


def dispatch_batch(conn, job: Dispatch, *, dag_run_id: str, channel: str,
                   batch_no: int) -> dict[str, dict[str, int]]:
    """Send a batch, a chunk at a time: a few times `concurrency` messages, or `concurrency`
    requests' worth where a request carries several (so a worker killed mid-chunk leaves that
    many `sending`, later `unknown`); returns {step: {"sent" or the reason not: count}}.

    The pool never runs dry: the next chunk is claimed and queued while the previous one is
    still being sent, then the previous one is settled in one statement. Memory is a chunk or
    two whatever the batch's size.

    Raises ProviderUnavailable, after settling what was sent, when some messages never
    reached the provider: they stay planned, and the task's retry claims them again."""
    hook = job.email if channel == "email" else job.sms
    hook.check()
    per_request = getattr(hook, "per_request", 1) if hasattr(hook, "send_many") else 1
    job = replace(job, templates=SteadyTemplates(job.templates))
    counts: dict[str, Counter] = {}
    released, first_claim = 0, True
    with ThreadPoolExecutor(max_workers=job.concurrency) as pool:
        in_flight: _Chunk | None = None
        try:
            while True:
                rows = [] if released else ledger.claim_batch(
                    conn, program=job.program.name, dag_run_id=dag_run_id, channel=channel,
                    batch_no=batch_no, limit=job.concurrency * max(CLAIM_FACTOR, per_request),
                    new_attempt=first_claim)
                first_claim = False
                previous, in_flight = in_flight, (_start(conn, job, pool, rows, per_request)
                                                  if rows else None)
                if previous is not None:
                    released += _settle(conn, previous, counts)
                if in_flight is None:
                    break
        finally:
            if in_flight is not None:  # something above failed: settle what was started
                _settle(conn, in_flight, counts)
    if released:
        raise ProviderUnavailable(
            f"{released} message(s) could not reach the {channel} provider and stay "
            "planned: the task's retry (or the next run) sends them"
        )
    return {step: dict(counter) for step, counter in counts.items()}


def _start(conn, job: Dispatch, pool: ThreadPoolExecutor, rows: list[dict],
           per_request: int) -> _Chunk:
    """Read what the rows' messages need, then queue their sends on the pool, `per_request`
    messages to a request."""
    try:
        contacts = _audience_rows(conn, job, rows)
        short_urls = _short_survey_links(conn, job, rows, contacts)
        conn.commit()  # short links resolve before the first SMS carrying one goes out
    except Exception:  # nothing has left yet: give the rows back for the retry
        conn.rollback()
        ledger.release(conn, [row["ledger_id"] for row in rows])
        raise
    items = [(row, contacts.get((row["contact_id"], row["enrollment_id"])),
              short_urls.get(str(row["ledger_id"]))) for row in rows]
    return _Chunk(rows, [pool.submit(deliver_many, job, items[start:start + per_request])
                         for start in range(0, len(items), per_request)])


def _settle(conn, chunk: _Chunk, counts: dict[str, Counter]) -> int:
    """Wait for a chunk's sends, write their outcomes; returns how many went back to
    planned (never reached the provider)."""
    outcomes = [outcome for send in chunk.sends for outcome in send.result()]
    ledger.settle(conn, outcomes)
    for row, outcome in zip(chunk.rows, outcomes, strict=True):
        label = "sent" if outcome.state == "sent" else ledger.reason_category(outcome.reason)
        counts.setdefault(row["step"], Counter())[label] += 1
    return sum(outcome.state == "planned" for outcome in outcomes)


@dataclass(frozen=True)
class _Ready:
    """A message rendered and addressed, ready to go."""

    ledger_id: str
    message: EmailMessage | SmsMessage
    template_version: str


def deliver(job: Dispatch, row: Mapping[str, Any], contact: Mapping[str, Any] | None, *,
            short_url: str | None = None) -> ledger.Outcome:
    """Send one claimed message; `short_url` replaces a survey link in an SMS."""
    return deliver_many(job, [(row, contact, short_url)])[0]


def deliver_many(job: Dispatch, items: list[tuple[Mapping[str, Any], Mapping[str, Any] | None,
                                                  str | None]]) -> list[ledger.Outcome]:
    """Send claimed messages of one channel, each (row, audience row, short link): one
    request when there are several and the hook sends many at once, else one each. Whatever
    happens to one message is that message's outcome."""
    prepared = [_prepare(job, *item) for item in items]
    ready = [item for item in prepared if isinstance(item, _Ready)]
    hook = job.email if ready and isinstance(ready[0].message, EmailMessage) else job.sms
    if len(ready) > 1 and hasattr(hook, "send_many"):
        try:
            results = hook.send_many([item.message for item in ready])
        except Exception as err:  # a bug: every message of the request may have gone out
            log.exception("sending %d emails in one request failed", len(ready))
            results = [err] * len(ready)
    else:
        results = [_send_one(hook, item.message) for item in ready]
    answers = iter(results)
    return [item if isinstance(item, ledger.Outcome) else _outcome(item, next(answers))
            for item in prepared]


def _prepare(job: Dispatch, row: Mapping[str, Any], contact: Mapping[str, Any] | None,
             short_url: str | None) -> _Ready | ledger.Outcome:
    """The message for a claimed row, or why it is not sent."""
    ledger_id = row["ledger_id"]
    step = job.program.step(row["step"])
    # The audience row is read at send time: what changed since the plan still counts.
    if contact is None:
        return ledger.Outcome(ledger_id, "skipped", "left_audience")
    if job.program.goal and not step.is_internal and contact.get(job.program.goal, True):
        return ledger.Outcome(ledger_id, "skipped", "goal_reached_before_send")
    if not step.is_internal and not contact.get(f"has_{step.channel}_consent"):
        return ledger.Outcome(ledger_id, "skipped", "no_consent_at_send")
    contact = personalize(job, step, row, contact, short_url=short_url)
    unsubscribe_url = contact.get("unsubscribe_url")
    try:
        rendered = render(job.program, job.templates, step, row["locale"], contact)
    except TemplateProblem as problem:
        return ledger.Outcome(ledger_id, "failed", f"template_error: {problem}")
    except Exception as err:  # e.g. template maths on odd contact data: this message only
        return ledger.Outcome(ledger_id, "failed", f"template_error: {type(err).__name__}")
    if step.channel == "sms":
        return _Ready(ledger_id, SmsMessage(
            to=row["recipient"], body=rendered.text,
            status_callback=_status_callback(job, ledger_id, step.name)), rendered.version)
    return _Ready(ledger_id, EmailMessage(
        to=row["recipient"], subject=rendered.subject, text=rendered.text,
        html=rendered.html, from_email=job.program.sender.email,
        from_name=job.program.sender.name,
        custom_args={"ledger_id": ledger_id, "program": job.program.name, "step": step.name},
        categories=(job.program.name,),
        headers={"List-Unsubscribe": f"<{unsubscribe_url}>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        if unsubscribe_url else {},
    ), rendered.version)


def _send_one(hook: ProviderHook, message: EmailMessage | SmsMessage) -> str | Exception:
    try:
        return hook.send(message)
    except Exception as err:  # becomes this message's outcome
        return err


def _outcome(ready: _Ready, answer: str | Exception) -> ledger.Outcome:
    """The ledger outcome of a message the provider answered (its id) or did not."""
    ledger_id, version = ready.ledger_id, ready.template_version
    if isinstance(answer, ProviderError):
        if answer.retryable:  # nothing was accepted: back to planned, to go out on a retry
            return ledger.Outcome(ledger_id, "planned", f"provider_unavailable: {answer}")
        state = "unknown" if answer.ambiguous else "failed"
        category = "provider_outcome_unknown" if answer.ambiguous else "provider_rejected"
        return ledger.Outcome(ledger_id, state, f"{category}: {answer}",
                              template_version=version)
    if isinstance(answer, Exception):  # a bug must cost one message, and it may have gone out
        return ledger.Outcome(ledger_id, "unknown",
                              f"dispatch_error: {type(answer).__name__}: {answer}",
                              template_version=version)
    return ledger.Outcome(ledger_id, "sent", provider_message_id=answer,
                          template_version=version)


def personalize(job: Dispatch, step: Step, row: Mapping[str, Any], contact: Mapping[str, Any],
                *, short_url: str | None = None) -> dict[str, Any]:
    """The audience row plus the links its templates get: unsubscribe (not in an internal
    alert), survey (`short_url` replaces it in an SMS). Shared with previews and lint."""
    contact = dict(contact)
    contact.pop("unsubscribe_url", None)  # only ever ours, never an audience column's
    unsubscribe_url = None if step.is_internal else _unsubscribe_url(job, row)
    if unsubscribe_url:
        contact["unsubscribe_url"] = unsubscribe_url
    if step.survey_link:  # an SMS's short link was made (and its token issued) before
        contact.update({"survey_url": short_url} if short_url
                       else _survey_links(job, row, contact))
    return contact


def render(program: Program, templates: TemplateSet, step: Step, locale: str,
           contact: Mapping[str, Any]) -> Rendered:
    """Render a step for one contact; a field the contact lacks is undefined, not empty."""
    context = {key: value for key, value in contact.items() if value is not None}
    context.update(sender_name=program.sender.name, program=program.name, step=step.name,
                   locale=locale)
    return templates.render(step.template, step.channel, locale, context)


def _unsubscribe_url(job: Dispatch, row: Mapping[str, Any]) -> str | None:
    """A signed one-click link naming contact and channel, never readable from the URL."""
    if row["channel"] != "email" or not (job.public_url and job.signer):
        return None
    token = job.signer.issue("unsubscribe", row["contact_id"], "email")
    return f"{job.public_url}/unsubscribe/{token}"


def _short_survey_links(conn, job: Dispatch, rows: list[dict],
                        contacts: Mapping[tuple[str, str], Mapping[str, Any]]) -> dict[str, str]:
    """Short links for the survey SMS among `rows`, stored before anything is sent."""
    targets = {}
    for row in rows:
        contact = contacts.get((row["contact_id"], row["enrollment_id"]))
        if row["channel"] == "sms" and contact and job.program.step(row["step"]).survey_link:
            url = _survey_links(job, row, contact).get("survey_url")
            if url:
                targets[str(row["ledger_id"])] = url
    return links.shorten(conn, job.public_url, targets) if targets else {}


def _survey_links(job: Dispatch, row: Mapping[str, Any], contact: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """`survey_url`, and `survey_score_urls` (0–10, pre-filled), on a token naming this
    message: one contact, one survey."""
    from nurture.webhooks.surveys import survey_url

    if not (job.public_url and job.signer):
        return {}
    link = dict(signer=job.signer, public_url=job.public_url, contact_id=row["contact_id"],
                channel=row["channel"], survey_id=str(row["ledger_id"]),
                trigger=str(contact.get("trigger") or job.program.name))
    url = survey_url(**link)
    return {"survey_url": url, "survey_score_urls": [f"{url}?score={n}" for n in range(11)]}


def _status_callback(job: Dispatch, ledger_id: str, step: str) -> str | None:
    if not job.public_url:
        return None
    query = urlencode({"ledger_id": ledger_id, "program": job.program.name, "step": step})
    return f"{job.public_url}/webhooks/twilio/status?{query}"


def _audience_rows(conn, job: Dispatch, rows: list[dict]) -> dict[tuple[str, str], dict]:
    """The current audience row of each (contact, enrollment): read at send time, so a
    consent withdrawn since planning still stops the message."""
    if not rows:
        return {}
    with conn.cursor() as cur:
        cur.execute(
            f"select * from marts.{job.program.audience} where contact_id = any(%s)",
            (list({row["contact_id"] for row in rows}),),
        )
        columns = [column.name for column in cur.description]
        found = [dict(zip(columns, values, strict=True)) for values in cur]
        # The audience is a table dbt built before the plan. Consent withdrawn since then is
        # in dbt's consent view, which reads the raw events when queried: a withdrawal wins.
        cur.execute(
            "select contact_id, has_email_consent, has_sms_consent"
            f" from {job.live_consent} where contact_id = any(%s)",
            (list({row["contact_id"] for row in found}),),
        )
        now = {contact_id: (email, sms) for contact_id, email, sms in cur}
    for row in found:
        email, sms = now.get(row["contact_id"], (False, False))
        for column, allowed in (("has_email_consent", email), ("has_sms_consent", sms)):
            if column in row:
                row[column] = bool(row[column]) and bool(allowed)
    return {(row["contact_id"], row["enrollment_id"]): row for row in found}
