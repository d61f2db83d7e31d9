"""
### Lead nurture

**Who it reaches:** leads marketing still owns — no feedback from sales yet, or recycled
by sales (back after `nurture_recycle_cooldown_days`). A content track chosen by persona
(marketing, sales or other job functions), about weekly.

**What they get**

| when | channel | step |
| --- | --- | --- |
| on entering | email | `content_1` — the persona's first piece |
| a week after the last | email | `content_2` … `content_4` |
| reaching the MQL score | email (sales) | `mql_handoff` — to the owner: score, activity |
| SLA hours after, not worked | email (sales manager) | `sla_escalation` |

**What stops a contact:** reaching the MQL threshold ends the track (the goal) and hands
the lead to sales; engaging heavily right now pauses it (`is_receptive`); sales feedback
takes the lead out. Consent, addresses, the holdout (5%) and the frequency cap apply.

**The guard:** before anything is sent, Great Expectations checks the audience
(`expectations/nurture_audience.json`): its size against the last good run, one row per
lead, someone to hand every MQL to, the MQL flag and consent never unknown, emails mostly
valid, source data loaded within the last day. If it fails, nothing is sent.

*The program below is compiled into this Airflow DAG by `nurture.dag_factory.build_dag`.*
"""

from __future__ import annotations

from datetime import timedelta

from nurture.dag_factory import build_dag
from nurture.program import Program, Sender, email

DAY, WEEK = timedelta(days=1), timedelta(days=7)

nurture = Program(
    name="nurture",
    audience="nurture_audience",
    goal="is_mql",
    steps=(
        # The track: the first piece on entering (however late a lead is found), then
        # each a week after the previous one went out; a lead engaging heavily waits.
        email("content_1", after=timedelta(0), expires_after=90 * DAY,
              condition="is_receptive", template="content"),
        *(email(f"content_{n}", after=WEEK, anchor=f"content_{n - 1}_sent_at",
                expires_after=2 * WEEK, condition="is_receptive", template="content")
          for n in range(2, 5)),
        email("mql_handoff", after=timedelta(0), anchor="mql_at", to="handoff_email",
              expires_after=3 * DAY),
        email("sla_escalation", after=timedelta(0), anchor="sla_due_at",
              to="sales_manager_email", condition="is_unworked", expires_after=2 * DAY),
    ),
    priority=40,  # a webinar invitation or onboarding email wins a capped day
    sender=Sender(email="hello@nurture.example", name="Nurture"),
    tags=("nurture", "leads"),
    doc_md=__doc__,
)

dag = build_dag(nurture)
