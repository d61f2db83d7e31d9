"""Test sends: a program's steps rendered for a sample contact and delivered only to the
marketer's own address or number.

Tests never touch the ledger: a contact's message is a ledger row, and a test is not one —
it must not use up the contact's (program, step, contact, enrollment) key, count against
the frequency cap, or appear in the marts as sent. Tests live in `nurture.test_sends`,
one row per (program, run, step), written `sending` before the request leaves, so a
retried task never sends the same test twice. They are marked as tests wherever they show:
"[TEST]" before the subject or text, SendGrid category `nurture-test`, custom args without
a ledger id, no SMS status callback. They are rendered as previews are
(`nurture.preview`): links of the real shape signed with a throwaway key, since a link
signed for the sample contact would act on that contact's behalf when the marketer clicks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from nurture import addresses, planner
from nurture.dispatcher import Dispatch, ProviderHook
from nurture.exceptions import InvalidRunOptions, ProviderError
from nurture.preview import render_step
from nurture.program import Program, Step
from nurture.providers import EmailMessage, SmsMessage
from nurture.templates import TemplateProblem

DDL = """
create table if not exists nurture.test_sends (
    test_send_id uuid primary key default gen_random_uuid(),
    program text not null,
    step text not null,
    dag_run_id text not null,
    channel text not null check (channel in ('email', 'sms')),
    recipient text not null,
    sample_contact_id text not null,
    sample_enrollment_id text not null,
    state text not null check (state in ('sending', 'sent', 'failed', 'unknown')),
    reason text,
    template_version text,
    provider_message_id text,
    created_at timestamptz not null default now(),
    unique (program, dag_run_id, step)
);
"""
MARK = "[TEST] "
CATEGORY = "nurture-test"


def sample_contact(program: Program, step: Step, audience: Sequence[Mapping[str, Any]], *,
                   now: datetime, contact_id: str | None = None) -> Mapping[str, Any]:
    """Whose data fills a test of `step`: the chosen contact, or the first the step is due
    for now, or the first it could ever be for (condition met), or simply the first."""
    if contact_id is not None:
        rows = [row for row in audience if row["contact_id"] == contact_id]
        if not rows:
            raise InvalidRunOptions(f"contact {contact_id!r} is not in the {program.audience} "
                                    "audience (as narrowed for this run)")
        return next((row for row in rows if not step.condition or row.get(step.condition)),
                    rows[0])
    if not audience:
        raise InvalidRunOptions(f"the {program.audience} audience is empty: there is nobody "
                                "to render a test for")
    due = (row for row in audience
           if planner.decide(program, step, row, now=now).action == planner.SEND)
    eligible = (row for row in audience if not step.condition or row.get(step.condition))
    return next(due, None) or next(eligible, None) or audience[0]


def send(conn, job: Dispatch, hooks: Mapping[str, ProviderHook], *, run_id: str,
         steps: Sequence[Step], addresses: Mapping[str, str | None],
         audience: Sequence[Mapping[str, Any]], now: datetime,
         contact_id: str | None = None) -> list[dict]:
    """Send each step to the test address of its channel (steps without one are left out);
    returns what became of each. `job`: how to render (`preview.rendering_job`). Samples
    are chosen, and hooks checked, before anything is sent."""
    program = job.program
    work = [(step, addresses[step.channel],
             sample_contact(program, step, audience, now=now, contact_id=contact_id))
            for step in steps if addresses.get(step.channel)]
    for channel in {step.channel for step, _, _ in work}:
        hooks[channel].check()
    results = []
    for step, recipient, contact in work:
        test_send_id = _claim(conn, program, step, run_id, recipient, contact)
        if test_send_id is None:  # a retried task: this test already went (or may have)
            continue
        outcome = _deliver(job, hooks[step.channel], step, recipient, contact, test_send_id)
        _settle(conn, test_send_id, outcome)
        results.append({"step": step.name, "channel": step.channel, "recipient": recipient,
                        "sample_contact_id": contact["contact_id"], **outcome})
    return results


def _deliver(job: Dispatch, hook: ProviderHook, step: Step, recipient: str,
             contact: Mapping[str, Any], test_send_id: str) -> dict:
    program = job.program
    try:
        locale = addresses.locale(contact.get("locale"), program.default_locale)
    except addresses.Unusable:  # the contact's would not be sent; the test shows the default
        locale = program.default_locale
    try:
        rendered, _ = render_step(job, step, contact, locale)
    except TemplateProblem as problem:
        return {"state": "failed", "reason": f"template_error: {problem}"}
    except Exception as err:  # template maths on odd sample data
        return {"state": "failed", "reason": f"template_error: {type(err).__name__}: {err}"}
    tags = {"test_send_id": test_send_id, "program": program.name, "step": step.name}
    try:
        if step.channel == "email":
            message_id = hook.send(EmailMessage(
                to=recipient, subject=MARK + rendered.subject, text=rendered.text,
                html=rendered.html, from_email=program.sender.email,
                from_name=program.sender.name, custom_args=tags,
                categories=(program.name, CATEGORY)))
        else:
            message_id = hook.send(SmsMessage(to=recipient, body=MARK + rendered.text))
    except ProviderError as err:
        return {"state": "unknown" if err.ambiguous else "failed",
                "reason": f"provider_error: {err}", "template_version": rendered.version}
    except Exception as err:  # it may have gone out
        return {"state": "unknown", "reason": f"dispatch_error: {type(err).__name__}: {err}",
                "template_version": rendered.version}
    return {"state": "sent", "provider_message_id": message_id,
            "template_version": rendered.version}


def _claim(conn, program: Program, step: Step, run_id: str, recipient: str,
           contact: Mapping[str, Any]) -> str | None:
    with conn.cursor() as cur:
        cur.execute(
            "insert into nurture.test_sends (program, step, dag_run_id, channel, recipient,"
            " sample_contact_id, sample_enrollment_id, state)"
            " values (%s, %s, %s, %s, %s, %s, %s, 'sending')"
            " on conflict (program, dag_run_id, step) do nothing returning test_send_id::text",
            (program.name, step.name, run_id, step.channel, recipient, contact["contact_id"],
             contact["enrollment_id"]))
        row = cur.fetchone()
    conn.commit()  # recorded before the request leaves
    return row[0] if row else None


def _settle(conn, test_send_id: str, outcome: Mapping[str, Any]) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "update nurture.test_sends set state = %s, reason = %s, template_version = %s,"
            " provider_message_id = %s where test_send_id = %s::uuid",
            (outcome["state"], outcome.get("reason"), outcome.get("template_version"),
             outcome.get("provider_message_id"), test_send_id))
    conn.commit()


def for_run(conn, *, program: str, dag_run_id: str) -> list[dict]:
    """The tests a run sent, for its summary."""
    with conn.cursor() as cur:
        cur.execute(
            "select step, channel, recipient, sample_contact_id, state, reason"
            " from nurture.test_sends where program = %s and dag_run_id = %s order by created_at",
            (program, dag_run_id))
        columns = [c.name for c in cur.description]
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
