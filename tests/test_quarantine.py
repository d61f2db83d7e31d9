"""Bad source rows are quarantined with a reason, counted, and kept out of every audience,
while the rest of the run goes on: dbt on the real warehouse, then a real onboarding plan."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from nurture import seed, warehouse

NOW = datetime.now(UTC)
# (contact_id, created_at, updated_at, loaded_at): each CRM export of a quarantine contact.
CRM_ROWS = [
    ("Q-future", NOW + timedelta(days=30), NOW + timedelta(days=30), NOW),
    ("Q-1900", datetime(1900, 1, 1, tzinfo=UTC), NOW - timedelta(days=2), NOW),
    ("Q-backwards", NOW - timedelta(days=1), NOW - timedelta(days=9), NOW),
    # A duplicate whose newest export is impossible: the older, sound one is kept.
    ("Q-dup", NOW - timedelta(days=9), NOW - timedelta(days=5), NOW - timedelta(days=4)),
    ("Q-dup", NOW - timedelta(days=9), NOW + timedelta(days=400), NOW),
    # A plain duplicate: the older export is superseded.
    ("Q-twice", NOW - timedelta(days=9), NOW - timedelta(days=6), NOW - timedelta(days=6)),
    ("Q-twice", NOW - timedelta(days=9), NOW - timedelta(days=3), NOW - timedelta(days=3)),
    ("Q-signup", NOW - timedelta(days=9), NOW - timedelta(days=3), NOW),
]
SIGNUPS = [("S-Q-signup", "Q-signup", NOW + timedelta(days=365)),
           ("S-Q-twice", "Q-twice", NOW - timedelta(hours=2))]


def _dbt(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "nurture.cli", "dbt", *args, "--quiet",
                             "--indirect-selection", "cautious"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _rows(sql: str, *params) -> list[tuple]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


@pytest.fixture(scope="module")
def quarantined(warehouse_url):
    with warehouse.connect() as conn:
        seed.load(conn, seed.build())
        with conn.cursor() as cur:
            for contact_id, created, updated, loaded in CRM_ROWS:
                cur.execute(
                    "insert into raw.crm_contacts (contact_id, email, phone, first_name,"
                    " time_zone, locale, lifecycle_stage, lifecycle_stage_changed_at, created_at,"
                    " updated_at, _loaded_at) values (%s, %s, '+358401234567', 'Quinn',"
                    " 'Europe/Helsinki', 'en', 'customer', %s, %s, %s, %s)",
                    (contact_id, f"{contact_id.lower()}@example.com", created, created, updated,
                     loaded))
            for signup_id, contact_id, signed_up in SIGNUPS:
                cur.execute("insert into raw.signups (signup_id, contact_id, plan, signed_up_at,"
                            " _loaded_at) values (%s, %s, 'pro', %s, now())",
                            (signup_id, contact_id, signed_up))
    _dbt("build", "-s", "+contacts_quarantined", "+onboarding_audience")
    yield
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("delete from raw.crm_contacts where contact_id like 'Q-%'")
        cur.execute("delete from raw.signups where contact_id like 'Q-%'")
    _dbt("build", "-s", "+contacts_quarantined", "+onboarding_audience")


def test_each_bad_row_is_quarantined_with_its_reason(quarantined):
    rows = _rows("select contact_id, source_table, reason, detail from marts.contacts_quarantined"
                 " where contact_id like 'Q-%%' order by contact_id, reason")
    found = {(contact, table, reason) for contact, table, reason, _ in rows}
    assert found == {
        ("Q-1900", "crm_contacts", "impossible_date"),
        ("Q-backwards", "crm_contacts", "impossible_date"),
        ("Q-dup", "crm_contacts", "impossible_date"),
        ("Q-future", "crm_contacts", "impossible_date"),
        ("Q-signup", "signups", "impossible_date"),
        ("Q-twice", "crm_contacts", "duplicate_contact"),
    }
    details = {contact: detail for contact, _, _, detail in rows}
    assert details["Q-1900"].startswith("created_at 1900-01-01")
    assert details["Q-backwards"] == "updated_at before created_at"
    assert "signed_up_at" in details["Q-signup"]


def test_quarantined_rows_reach_no_audience_and_sound_rows_still_do(quarantined):
    contacts = dict(_rows("select contact_id, updated_at from marts.contacts"
                          " where contact_id like 'Q-%%'"))
    # Impossible rows are gone; a duplicate keeps its sound export.
    assert set(contacts) == {"Q-dup", "Q-twice", "Q-signup"}
    assert contacts["Q-dup"] < NOW
    audience = {row[0] for row in _rows("select contact_id from marts.onboarding_audience"
                                        " where contact_id like 'Q-%%'")}
    # The future sign-up is no enrollment (Q-signup enters as a CRM customer instead).
    assert "Q-future" not in audience and "Q-1900" not in audience
    assert {"Q-twice", "Q-dup", "Q-signup"} <= audience
    assert _rows("select entry_source from marts.onboarding_audience"
                 " where contact_id = 'Q-signup'") == [("crm_customer",)]


def test_the_run_summary_counts_them(quarantined):
    from nurture import tasks

    with warehouse.connect() as conn:
        counts = tasks._quarantined(conn)
    assert counts["impossible_date"] >= 5
    assert counts["duplicate_contact"] >= 1
