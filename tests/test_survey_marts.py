"""The survey marts on the embedded PostgreSQL: answers as the receiver stores them, built
by `nurture dbt build`, give the NPS categories and figures a marketer would work out."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from nurture import seed, warehouse
from nurture.webhooks import storage

ISSUED = datetime(2025, 2, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(warehouse_url):
    """Survey answers under a trigger of this module's own, with the demo contacts."""
    trigger = f"test_{uuid.uuid4().hex[:8]}"
    with warehouse.connect() as conn:
        seed.load(conn, seed.build())  # the contacts the segment comes from
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select contact_id from raw.crm_contacts order by contact_id limit 1")
        known = cur.fetchone()[0]
    march = [(known, 10), (known, 9), (known, 9), (known, 7), (known, 2),
             ("gone-1", 10), ("gone-2", 0), ("gone-3", 0)]
    rows = [(f"{trigger}-{i}", contact, score, datetime(2025, 3, 1 + i, tzinfo=UTC))
            for i, (contact, score) in enumerate(march)]
    rows.append((f"{trigger}-april", known, 6, datetime(2025, 4, 1, tzinfo=UTC)))
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.executemany(
            "insert into raw.survey_responses (survey_id, contact_id, channel, trigger, score,"
            " issued_at, first_answered_at, answered_at) values (%s, %s, 'email', %s, %s, %s,"
            " %s, %s)",
            [(survey, contact, trigger, score, ISSUED, at, at)
             for survey, contact, score, at in rows])
    # One more answered twice through the receiver's own store: the second answer counts.
    for score, comment in ((3, "meh"), (9, "Better now")):
        storage.store_survey_response(warehouse_url, {
            "survey_id": f"{trigger}-twice", "contact_id": known, "channel": "sms",
            "trigger": trigger, "score": score, "comment": comment, "issued_at": ISSUED})
    result = subprocess.run(
        # cautious: skip tests of unselected models that share a parent (onboarding_audience)
        [sys.executable, "-m", "nurture.cli", "dbt", "build", "--quiet",
         "-s", "+survey_responses", "+nps_by_month", "--indirect-selection", "cautious"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select lifecycle_stage from marts.contacts where contact_id = %s", (known,))
        segment = cur.fetchone()[0]
    return trigger, segment


def rows(sql: str, *params) -> list[tuple]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def test_each_answer_is_categorised_and_segmented(built):
    trigger, segment = built
    answers = dict(rows("select survey_id, (score, nps_category, segment) from"
                        " marts.survey_responses where trigger = %s", trigger))
    assert len(answers) == 10
    assert answers[f"{trigger}-0"] == f"(10,promoter,{segment})"
    assert answers[f"{trigger}-3"] == f"(7,passive,{segment})"
    assert answers[f"{trigger}-4"] == f"(2,detractor,{segment})"
    assert answers[f"{trigger}-6"] == "(0,detractor,unknown)"  # no longer in the CRM


def test_a_changed_answer_is_one_row_with_the_new_score(built):
    trigger, _ = built
    assert rows("select score, nps_category, comment, answer_count, channel"
                " from marts.survey_responses where survey_id = %s", f"{trigger}-twice") == [
        (9, "promoter", "Better now", 2, "sms")]


def test_nps_is_promoters_minus_detractors_over_responses(built):
    trigger, segment = built
    by_month = rows(
        "select month::text, segment, program, responses, promoters, passives, detractors,"
        " nps::float from marts.nps_by_month where trigger = %s and month < '2025-05-01'"
        " order by 1, 2", trigger)
    assert sorted(by_month) == sorted([
        # 10, 9, 9 promote; 7 is passive; 2 detracts: (3 - 1) / 5
        ("2025-03-01", segment, "satisfaction_survey", 5, 3, 1, 1, 40.0),
        # 10 promotes, 0 and 0 detract: (1 - 2) / 3, rounded to one decimal
        ("2025-03-01", "unknown", "satisfaction_survey", 3, 1, 0, 2, -33.3),
        ("2025-04-01", segment, "satisfaction_survey", 1, 0, 0, 1, -100.0),
    ])
