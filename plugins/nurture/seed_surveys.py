"""The satisfaction survey's side of the demo dataset: the CRM's users (account owners)
and support tickets, timed relative to the moment of loading.

    long_ago contacts      onboarding began 30 days ago: their survey is due
    T001–T004              tickets closed two hours ago: surveys due
    T005–T006              closed tickets of two long_ago contacts: one survey each
                           all the same (one per contact per 90 days, whatever the trigger)
"""

from __future__ import annotations

from datetime import timedelta

HOUR = timedelta(hours=1)

RAW_TABLES = {
    "crm_users": "user_id text, full_name text, email text, role text, _loaded_at timestamptz",
    "support_tickets": "ticket_id text, contact_id text, subject text, status text,"
    " opened_at timestamptz, closed_at timestamptz, _loaded_at timestamptz",
}
USERS = (
    ("U001", "Mia Korhonen", "mia.korhonen@nurture.example", "account_manager"),
    ("U002", "Jon Berg", "jon.berg@nurture.example", "account_manager"),
    ("U003", "Ada Lindqvist", "ada.lindqvist@nurture.example", "sales_manager"),
)
ACCOUNT_MANAGERS = ("U001", "U002")
SUBJECTS = ("Cannot connect my data source", "Invoice question", "Export is slow",
            "How do I invite a teammate?", "Report shows wrong totals", "Password reset")


def owner_for(number: int, stage: str) -> str | None:
    """Customers and subscribers have an account manager; leads have none yet."""
    return None if stage == "lead" else ACCOUNT_MANAGERS[number % len(ACCOUNT_MANAGERS)]


def add_support(data, ticket_holders: list[str], long_ago: list[str]) -> None:
    now = data.loaded_at
    for user in USERS:
        data.tables["crm_users"].append((*user, now))
    holders = [*ticket_holders[:4], *long_ago[:2]]
    for n, contact_id in enumerate(holders, start=1):
        data.tables["support_tickets"].append((
            f"T{n:03d}", contact_id, SUBJECTS[n % len(SUBJECTS)], "closed",
            now - 2 * HOUR - timedelta(days=1), now - 2 * HOUR, now,
        ))
    # An open ticket: no survey until it is closed.
    data.tables["support_tickets"].append((
        "T900", ticket_holders[4], SUBJECTS[0], "open", now - HOUR, None, now,
    ))
