"""
### Webinar

**Who it reaches:** for every webinar, the contacts in the lifecycle stage it is for
(invitations), and everyone who registers (everything after). One DAG serves every
webinar; trigger it with a *Webinar id* to run it for one.

**What they get**

| when | channel | step |
| --- | --- | --- |
| 14 days before | email | `invitation` — to those the webinar is for |
| 3 days before | email | `last_call` — to the invited who have not registered |
| on registration | email | `confirmation` — a seat is theirs, with the join link |
| on registration, when full | email | `waitlist` — their place on the waitlist |
| when a seat frees up | email | `promoted` — off the waitlist, seat confirmed |
| 1 day before | email | `reminder` — to the seated |
| 1 hour before | SMS | `reminder_sms` — to the seated, only inside 09:00–20:00 their time |
| 1 hour after | email | `thank_you` — the recording, to those who attended |
| 1 hour after | email | `missed_you` — the recording, to the seated who did not come |

**Seats:** never more confirmed than the webinar's capacity. When a confirmed registrant
cancels, the first on the waitlist (earliest registration) is promoted and told, once,
even when runs overlap or a task is retried (`nurture.webinars`).

**What stops a message:** no consent for the channel, an invalid address, a message found
too late (a reminder after the start is expired, never sent), or the SMS send window.

**The guard:** before anything is sent, Great Expectations checks the audience
(`expectations/webinar_audience.json`): its size against the last good run, one row per
contact and webinar, a start time for every webinar, valid seat states, consent never
unknown, emails mostly valid, source data loaded within the last day. If it fails, nothing
is sent.

*The program below is compiled into this Airflow DAG by `nurture.dag_factory.build_dag`.*
"""

from __future__ import annotations

from datetime import timedelta

from nurture.dag_factory import build_dag
from nurture.program import Program, Sender, SendWindow, email, sms
from nurture.webinars import allocate_seats

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
NOW = timedelta(0)

webinar = Program(
    name="webinar",
    audience="webinar_audience",
    steps=(
        email("invitation", before=14 * DAY, anchor="starts_at", condition="is_invitable",
              expires_after=2 * DAY),
        email("last_call", before=3 * DAY, anchor="starts_at",
              condition="is_unregistered_invitee", expires_after=DAY),
        # What a registrant asked for: exempt from the frequency cap and the holdout.
        email("confirmation", after=NOW, anchor="confirmed_at", condition="is_seated",
              expires_after=DAY, kind="transactional"),
        email("waitlist", after=NOW, anchor="waitlisted_at", condition="is_waitlisted",
              expires_after=DAY, kind="transactional"),
        email("promoted", after=NOW, anchor="promoted_at", condition="is_seated",
              expires_after=DAY, kind="transactional"),
        email("reminder", before=DAY, anchor="starts_at", condition="is_seated",
              expires_after=12 * HOUR, kind="transactional"),
        sms("reminder_sms", before=HOUR, anchor="starts_at", condition="is_seated",
            expires_after=45 * timedelta(minutes=1), kind="transactional"),
        email("thank_you", after=HOUR, anchor="ends_at", condition="has_attended",
              expires_after=2 * DAY),
        email("missed_you", after=HOUR, anchor="ends_at", condition="is_no_show",
              expires_after=2 * DAY),
    ),
    filters=("webinar_id",),
    priority=60,  # an invitation beats a nurture email on the same day
    before_plan=(allocate_seats,),
    send_window=SendWindow(),  # 09:00–20:00 local, for SMS
    sender=Sender(email="events@nurture.example", name="Nurture Events"),
    tags=("webinar",),
    doc_md=__doc__,
)

dag = build_dag(webinar)
