"""Resolve `unknown` messages from the providers' own events.

A message is `unknown` when its request may have reached the provider but the answer was
lost (a timeout, a reset, a 5xx after the body was sent). It is never sent again: a second
copy is the one mistake a recipient never forgives. The provider settles the question
later: any event it reports about a message (SendGrid's processed, delivered, bounce...;
Twilio's queued, sent, delivered...) proves it accepted the request, so the row becomes
`sent`, with the provider's id and the reason `reconciled_from_provider_event`. A message
the provider never reports on stays `unknown`: no event is not proof that nothing left.

Runs at the start of every program run (before the frequency cap counts what went out) and
as `nurture reconcile`.
"""

from __future__ import annotations

RECONCILED = "reconciled_from_provider_event"

# Evidence per ledger id, from both providers' raw events: the earliest, with the provider's
# message id (SendGrid's sg_message_id is `<X-Message-Id>.<filter...>`).
_RESOLVE = """
with evidence as (
    select distinct on (ledger_id) ledger_id, message_id
      from (
        select payload ->> 'ledger_id' as ledger_id,
               split_part(payload ->> 'sg_message_id', '.', 1) as message_id, received_at
          from raw.sendgrid_events
         where payload ->> 'ledger_id' = any(%(unknown)s)
        union all
        select payload ->> 'ledger_id', message_sid, received_at
          from raw.twilio_status_callbacks
         where payload ->> 'ledger_id' = any(%(unknown)s)
      ) as events
     order by ledger_id, received_at
)
update nurture.message_ledger as ledger
   set state = 'sent',
       reason = %(reason)s,
       provider_message_id = coalesce(nullif(evidence.message_id, ''),
                                      ledger.provider_message_id),
       sent_at = ledger.updated_at,  -- when the request went out, not when we learnt of it
       updated_at = now()
  from evidence
 where ledger.ledger_id = evidence.ledger_id::uuid
   and ledger.state = 'unknown'
returning ledger.program
"""


def reconcile(conn, program: str | None = None) -> dict[str, dict[str, int]]:
    """Resolve what the providers' events prove was sent; commits. Returns
    {program: {"reconciled": n, "still_unknown": m}} for the programs that had unknown rows."""
    with conn.cursor() as cur:
        cur.execute(
            "select ledger_id::text, program from nurture.message_ledger where state = 'unknown'"
            " and (%(program)s::text is null or program = %(program)s)",
            {"program": program},
        )
        unknown = dict(cur.fetchall())
        if not unknown:
            return {}
        cur.execute(_RESOLVE, {"unknown": list(unknown), "reason": RECONCILED})
        resolved = [name for (name,) in cur.fetchall()]
    conn.commit()
    counts = {name: {"reconciled": 0, "still_unknown": 0} for name in unknown.values()}
    for name in unknown.values():
        counts[name]["still_unknown"] += 1
    for name in resolved:
        counts[name]["reconciled"] += 1
        counts[name]["still_unknown"] -= 1
    return counts
