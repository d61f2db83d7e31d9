"""Lead scoring's side of the demo dataset: what the 30 CRM leads told us on forms (their
fit), what they did on the website (engagement) and what sales said about them, timed
relative to the moment of loading.

Leads come in personas, each saying whether the default weights in dbt_project.yml make
them an MQL (`expected_mql`), so a test can check the scoring without re-implementing it:

    hot              strong fit, visited pricing and asked for a demo this week    MQL
    just_below       good fit, read an ebook and pricing recently: ~6 points short  —
                     (one fresh email click takes them over)
    went_cold        the hot ones' fit and activity, six weeks ago: decayed         —
    quiet            strong fit, no activity: fit alone is not enough             —
    poor_fit         a student reading the blog and the newsletter                —
    no_profile       never filled in the profile form                             —
    sales_accepted   hot; sales accepted the lead this morning                   MQL
    sales_rejected   hot; rejected, "no budget until next fiscal year"           MQL
    recycled         accepted then recycled three weeks ago, activity old         —
    won / lost       accepted a month ago, closed won / lost since               —
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

RAW_TABLES = {
    "lead_profiles": "contact_id text, job_title text, seniority text, company_name text,"
    " company_size integer, industry text, budget text, authority text, need text,"
    " timeline text, submitted_at timestamptz, _loaded_at timestamptz",
    "page_visits": "visit_id text, contact_id text, url text, visited_at timestamptz,"
    " _loaded_at timestamptz",
    "form_fills": "fill_id text, contact_id text, form_name text, filled_at timestamptz,"
    " _loaded_at timestamptz",
    "sales_feedback": "feedback_id text, contact_id text, outcome text, reason text,"
    " recorded_at timestamptz, recorded_by text, _loaded_at timestamptz",
}
SITE = "https://nurture.example"


@dataclass(frozen=True)
class Profile:
    """A lead's answers on the profile form: role, company and BANT."""

    job_title: str
    seniority: str
    company_size: int
    industry: str
    budget: str  # approved | planned | none
    authority: str  # decision_maker | influencer | none
    need: str  # high | medium | low
    timeline: str  # this_quarter | this_year | later | none


STRONG = Profile("VP of Marketing", "VP", 450, "Software", "approved", "decision_maker",
                 "high", "this_quarter")  # fit 90
GOOD = Profile("Marketing Director", "Director", 120, "Software", "planned", "influencer",
               "high", "this_year")  # fit 67
MIDDLING = Profile("Sales Manager", "Manager", 2500, "Fintech", "planned", "influencer",
                   "medium", "this_year")  # fit 53
POOR = Profile("Student", "Intern", 5, "Education", "none", "none", "low", "none")  # fit 0

# What a lead did, as (page path or "form:<name>", how long before loading).
HOT = (("form:demo_request", DAY), ("/pricing", 2 * DAY), ("/blog/lifecycle-programs", DAY),
       ("/customers", 2 * DAY), ("/docs/getting-started", 3 * DAY))
ALMOST = (("form:ebook_download", 3 * DAY), ("/pricing", 4 * DAY),
          ("/blog/lead-scoring", DAY), ("/blog/nurture-tracks", 2 * DAY))
BLOG_READER = (("form:newsletter", 2 * DAY),
               *((f"/blog/post-{n}", n * DAY) for n in range(1, 7)))


def _ago(activity, by: timedelta):
    return tuple((what, when + by) for what, when in activity)


@dataclass(frozen=True)
class LeadPersona:
    name: str
    count: int
    expected_mql: bool
    profile: Profile | None
    activity: tuple[tuple[str, timedelta], ...] = ()
    feedback: tuple[tuple[str, timedelta, str | None], ...] = ()  # (outcome, ago, reason)


PERSONAS = (
    LeadPersona("hot", 6, True, STRONG, HOT),
    LeadPersona("just_below", 4, False, GOOD, ALMOST),
    LeadPersona("went_cold", 5, False, STRONG, _ago(HOT, 42 * DAY)),  # three half-lives
    LeadPersona("quiet", 2, False, STRONG),
    LeadPersona("poor_fit", 6, False, POOR, BLOG_READER),
    LeadPersona("no_profile", 2, False, None, (("/blog/post-1", 5 * DAY),)),
    LeadPersona("sales_accepted", 1, True, STRONG, HOT, (("accepted", 12 * HOUR, None),)),
    LeadPersona("sales_rejected", 1, True, STRONG, HOT,
                (("rejected", DAY, "No budget until next fiscal year"),)),
    LeadPersona("recycled", 1, False, GOOD, _ago(ALMOST, 30 * DAY),
                (("accepted", 25 * DAY, None),
                 ("recycled", 21 * DAY, "Not ready, revisit next quarter"))),
    LeadPersona("won", 1, False, STRONG, _ago(HOT, 38 * DAY),
                (("accepted", 28 * DAY, None), ("won", 6 * DAY, None))),
    LeadPersona("lost", 1, False, MIDDLING, _ago(ALMOST, 38 * DAY),
                (("accepted", 35 * DAY, None), ("lost", 12 * DAY, "Chose a competitor"))),
)
SALES_REPS = ("U001", "U002")


def add_leads(data, leads: list[str]) -> dict[str, LeadPersona]:
    """Append profiles, visits, form fills and sales feedback for `leads` (the CRM's lead
    contacts, in order), persona by persona; returns each lead's persona."""
    assert len(leads) == sum(p.count for p in PERSONAS), "one persona per demo lead"
    now = data.loaded_at
    contacts = iter(leads)
    persona_of = {}
    for persona in PERSONAS:
        for _ in range(persona.count):
            contact_id = next(contacts)
            persona_of[contact_id] = persona
            number = int(contact_id[1:])
            if persona.profile:
                p = persona.profile
                data.tables["lead_profiles"].append((
                    contact_id, p.job_title, p.seniority, f"Company {number}", p.company_size,
                    p.industry, p.budget, p.authority, p.need, p.timeline,
                    now - 40 * DAY - HOUR / 2, now))
            for n, (what, ago) in enumerate(persona.activity, start=1):
                at = now - ago - number * timedelta(minutes=1)
                if what.startswith("form:"):
                    data.tables["form_fills"].append(
                        (f"F{number:05d}-{n}", contact_id, what[5:], at, now))
                else:
                    data.tables["page_visits"].append(
                        (f"V{number:05d}-{n}", contact_id, f"{SITE}{what}?utm_source=email",
                         at, now))
            for n, (outcome, ago, reason) in enumerate(persona.feedback, start=1):
                data.tables["sales_feedback"].append((
                    f"SF{number:05d}-{n}", contact_id, outcome, reason, now - ago,
                    SALES_REPS[number % len(SALES_REPS)], now))
    return persona_of
