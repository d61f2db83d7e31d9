"""The context an audience row carries about its contact for the person alerted: the survey
audience's five most recent messages, the nurture audience's five most recent engagements.
The marts rank only their own contacts' rows (ranking everyone's was most of their build at
a million contacts); a contact with more than five, or with none, still reads right."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from nurture import ledger, seed, warehouse

AUDIENCES = ["+survey_audience", "+nurture_audience"]
PROGRAM = "context_test"
# Far from any demo event, at noon UTC: the newest of their contact's, one date each.
DAYS = [datetime(2099, 6, day, 12, tzinfo=UTC) for day in range(1, 7)]


def dbt_build() -> None:
    result = subprocess.run(
        # cautious: skip tests of unselected models that share a parent
        [sys.executable, "-m", "nurture.cli", "dbt", "build", "--quiet", "-s", *AUDIENCES,
         "--indirect-selection", "cautious", "--exclude-resource-type", "unit_test"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def rows(sql: str, *params) -> list[tuple]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


@pytest.fixture(scope="module")
def built(warehouse_url):
    """The demo warehouse, then six sent messages for one survey contact and six page visits
    for one nurture lead, a day apart, and a message for a contact in neither audience."""
    with warehouse.connect() as conn:
        seed.load(conn, seed.build())
        ledger.ensure_schema(conn)
    dbt_build()
    (surveyed,), = rows("select min(contact_id) from marts.survey_audience")
    (lead,), = rows("select min(contact_id) from marts.nurture_audience")
    (outsider,), = rows("select min(contact_id) from marts.contacts where contact_id not in"
                        " (select contact_id from marts.survey_audience)")
    tag = uuid.uuid4().hex[:8]
    sent = [(f"step_{i}", surveyed, day) for i, day in enumerate(DAYS, 1)]
    sent.append(("step_1", outsider, DAYS[0]))
    with warehouse.connect() as conn, conn.cursor() as cur:
        for step, contact, day in sent:
            cur.execute(
                "insert into nurture.message_ledger (program, step, contact_id, enrollment_id,"
                " channel, state, due_at, planned_at, sent_at, updated_at)"
                " values (%s, %s, %s, %s, 'email', 'sent', %s, %s, %s, now())",
                (PROGRAM, step, contact, f"{PROGRAM}:{tag}", day, day, day))
        # not sent: no context
        cur.execute(
            "insert into nurture.message_ledger (program, step, contact_id, enrollment_id,"
            " channel, state, reason, due_at) values (%s, 'skipped_step', %s, %s, 'email',"
            " 'skipped', 'no_consent', %s)", (PROGRAM, surveyed, f"{PROGRAM}:{tag}", DAYS[-1]))
        cur.executemany(
            "insert into raw.page_visits (visit_id, contact_id, url, visited_at, _loaded_at)"
            " values (%s, %s, %s, %s, now())",
            [(f"{tag}-{i}", lead, "https://nurture.example/pricing" if i == 6
              else "https://nurture.example/blog", day) for i, day in enumerate(DAYS, 1)])
    dbt_build()
    yield surveyed, lead
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("delete from nurture.message_ledger where program = %s", (PROGRAM,))
        cur.execute("delete from raw.page_visits where visit_id like %s", (f"{tag}-%",))


def test_a_survey_row_shows_its_contacts_five_latest_sent_messages(built):
    surveyed, _ = built
    expected = "; ".join(f"{PROGRAM} / step_{i} (2099-06-0{i})" for i in range(6, 1, -1))
    found = {value for value, in rows(
        "select recent_messages from marts.survey_audience where contact_id = %s", surveyed)}
    assert found == {expected}


def test_a_nurture_row_shows_its_leads_five_latest_engagements(built):
    _, lead = built
    expected = "; ".join(["high intent page visit 2099-06-06"]
                         + [f"page visit 2099-06-0{i}" for i in range(5, 1, -1)])
    assert rows("select recent_activity from marts.nurture_audience where contact_id = %s",
                lead) == [(expected,)]


def test_every_row_reads_as_ranking_all_contacts_would(built):
    """The restricted ranking against the whole one, row by row (ties broken by id in both,
    as the demo's leads have a form fill and a visit at one moment)."""
    assert rows("""
        select count(*) filter (where a.recent_messages is distinct from every.recent_messages),
               count(a.recent_messages)
        from marts.survey_audience as a
        left join (
            select contact_id,
                   string_agg(program || ' / ' || step || ' ('
                              || to_char(sent_at, 'YYYY-MM-DD') || ')',
                              '; ' order by sent_at desc, ledger_id) as recent_messages
            from (select *, row_number() over (partition by contact_id
                                                order by sent_at desc, ledger_id)
                  from nurture.message_ledger where state = 'sent') as ranked
            where row_number <= 5
            group by contact_id
        ) as every using (contact_id)""")[0][0] == 0
    mismatched, with_activity = rows("""
        select count(*) filter (where a.recent_activity is distinct from every.recent_activity),
               count(a.recent_activity)
        from marts.nurture_audience as a
        left join (
            select contact_id,
                   string_agg(replace(engagement_kind, '_', ' ') || ' '
                              || to_char(occurred_at, 'YYYY-MM-DD'),
                              '; ' order by occurred_at desc, engagement_event_id)
                       as recent_activity
            from (select *, row_number() over (partition by contact_id
                                                order by occurred_at desc,
                                                         engagement_event_id)
                  from intermediate.int_lead_engagement_events) as ranked
            where row_number <= 5
            group by contact_id
        ) as every using (contact_id)""")[0]
    assert (mismatched, with_activity > 1) == (0, True)
