"""
### Satisfaction survey (NPS)

**Who it reaches:** contacts who pass a milestone — 30 days into onboarding, a support
ticket closed, a webinar attended — at most once per 90 days whatever the milestone.

**What they get**

| when | channel | step |
| --- | --- | --- |
| at the milestone | email | `survey_email` — would they recommend us, 0–10 (a personal link) |
| at the milestone | SMS | `survey_sms` — a short link, if they consent to SMS but not email |
| a detractor answers (0–6) | email | `detractor_alert` — to their account owner, with history |

**What stops a message:** a survey in the last 90 days (`messaged_recently`), no consent
for the channel, an invalid address, a milestone found more than three days late.
Answers arrive through the survey page of the webhook receiver (`/survey/{token}`): the
token names one contact and one survey; a second answer replaces the first.

**The guard:** before anything is sent, Great Expectations checks the audience
(`expectations/survey_audience.json`): its size against the last good run, one row per
milestone or answer, scores within 0–10, an owner for every detractor alert, consent never
unknown, emails mostly valid, source data loaded within the last day. If it fails, nothing
is sent.

*The program below is compiled into this Airflow DAG by `nurture.dag_factory.build_dag`.*
"""

from __future__ import annotations

from datetime import timedelta

from nurture.dag_factory import build_dag
from nurture.program import Program, Sender, SendWindow, email, sms

NOW, DAY = timedelta(0), timedelta(days=1)

satisfaction_survey = Program(
    name="satisfaction_survey",
    audience="survey_audience",
    steps=(
        email("survey_email", after=NOW, anchor="triggered_at", expires_after=3 * DAY,
              survey_link=True),
        sms("survey_sms", after=NOW, anchor="triggered_at", condition="prefers_sms",
            expires_after=3 * DAY, survey_link=True),
        email("detractor_alert", after=NOW, anchor="detractor_at", to="owner_email",
              expires_after=2 * DAY),
    ),
    once_per=90 * DAY,
    send_window=SendWindow(),  # 09:00–20:00 local, for SMS
    sender=Sender(email="feedback@nurture.example", name="Nurture"),
    tags=("survey",),
    doc_md=__doc__,
)

dag = build_dag(satisfaction_survey)
