"""
### Onboarding

**Who it reaches:** everyone who signs up for the product, or whom the CRM marks as a
customer — whichever happens first starts their onboarding.

**What they get**

| when | channel | step |
| --- | --- | --- |
| at sign-up | email | `welcome` — account ready, link to the getting-started guide |
| day 2 | email | `setup_tips` — three things successful teams do in week one |
| day 7 | SMS | `check_in` — an offer of help, only inside 09:00–20:00 in their time zone |

**What stops a contact:** activating the product (the goal) ends their onboarding; no
consent for a channel, an invalid address or an unknown time zone stops that message;
a step found more than a day or two late is recorded as expired instead of being sent late.

**The guard:** before anything is sent, Great Expectations checks the audience
(`expectations/onboarding_audience.json`): size against the last good run, one row per
contact, valid emails and phone numbers, known consent, fresh source data. If it fails,
nothing is sent.

*The program below is compiled into this Airflow DAG by `nurture.dag_factory.build_dag`.*
"""

from __future__ import annotations

from datetime import timedelta

from nurture.dag_factory import build_dag
from nurture.program import Program, Sender, SendWindow, email, sms

onboarding = Program(
    name="onboarding",
    audience="onboarding_audience",
    goal="is_activated",
    steps=(
        email("welcome", after=timedelta(0), expires_after=timedelta(days=1)),
        email("setup_tips", after=timedelta(days=2), expires_after=timedelta(days=2)),
        sms("check_in", after=timedelta(days=7), expires_after=timedelta(days=2)),
    ),
    send_window=SendWindow(),  # 09:00–20:00 local, for SMS
    sender=Sender(email="hello@nurture.example", name="Nurture"),
    tags=("onboarding",),
    doc_md=__doc__,
)

dag = build_dag(onboarding)
