"""`nurture bench` on a tiny synthetic warehouse: the data is deterministic, loads with
COPY, and every stage reports a figure (the figures themselves are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from nurture.bench import measure
from nurture.bench.synthetic import Size, _last_day, _tables


def rows_of(size: Size, table: str) -> list[tuple]:
    return list(_tables(size, datetime(2026, 6, 1, tzinfo=UTC))[table]())


def test_the_synthetic_data_is_the_same_for_a_seed_and_differs_across_seeds():
    size = Size(contacts=500, events=5_000)
    for table in ("crm_contacts", "events", "sendgrid_events"):
        assert rows_of(size, table) == rows_of(size, table)
    assert rows_of(size, "events") != rows_of(Size(500, 5_000, seed=8), "events")


def test_events_divide_between_activity_and_message_tables_as_asked():
    size = Size(contacts=1_000, events=20_000)
    total = sum(len(rows_of(size, t)) for t in ("events", "page_visits", "form_fills",
                                                 "sendgrid_events"))
    assert abs(total - 20_000) < 20_000 * 0.02
    assert len(rows_of(size, "crm_contacts")) == 1_000


def test_the_incremental_day_is_the_last_day_before_now_and_the_load_ends_before_it():
    """A daily build finds a day already past: were its events still to come, lead scoring
    would not count them yet and the bench would time a build unlike a real one."""
    now, day = datetime(2026, 6, 1, tzinfo=UTC), timedelta(days=1)
    size = Size(contacts=2_000, events=200_000)
    loaded = [row[3] for row in rows_of(size, "page_visits")]
    appended = [row[3] for row in _last_day(size, now)["page_visits"]()]
    assert len(appended) > 50
    assert max(loaded) <= now - day < min(appended) and max(appended) <= now
    # the CRM's last sync, beyond the incremental lookback (an hour) of the bench's build
    assert max(row[-2] for row in rows_of(size, "crm_contacts")) <= now - timedelta(hours=2)
    # the day as a load after that build brings it
    later = now + timedelta(minutes=5)
    assert {row[4] for row in _last_day(size, now, loaded_at=later)["page_visits"]()} == {later}
    sent = [row[11] for row in _last_day(size, now)["message_ledger"]()]
    assert now - day < min(sent) and max(sent) <= now


def test_message_events_belong_to_emails_the_ledger_sent():
    """SendGrid events carry a ledger id, as Nurture's sends do: the message models join
    them (events with none would be another sender's, which every model leaves out)."""
    size = Size(contacts=500, events=10_000)
    ledger = {row[0]: row for row in rows_of(size, "message_ledger")}
    events = [json.loads(row[3]) for row in rows_of(size, "sendgrid_events")]
    assert len(ledger) > 500 and len(events) > len(ledger)
    assert {event["ledger_id"] for event in events} == set(ledger)
    for event in events:
        sent = ledger[event["ledger_id"]]
        assert (sent[2], sent[6]) == (event["step"], "sent")
        assert event["timestamp"] >= sent[11].timestamp() - 1
    names = [event["event"] for event in events]
    assert names.count("delivered") > names.count("open") > names.count("click") > 0


def test_bench_reports_every_key_as_json(state_dir):
    result = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "bench", "--contacts", "300", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert set(measure.KEYS) <= set(report)
    assert (report["contacts"], report["events"]) == (300, 6_000)
    assert report["rows"]["crm_contacts"] == 300
    for key in ("load_s", "dbt_full_s", "dbt_incremental_s", "guard_s", "plan_s",
                "dag_parse_s", "dispatch_email_per_s", "dispatch_email_baseline_per_s",
                "dispatch_sms_per_s", "emulator_ceiling_per_s", "dispatcher_peak_rss_mb"):
        assert report[key] > 0, key
    assert report["dispatch_email_detail"]["outcomes"] == {"sent": 300}
    assert report["sms_max_in_any_second"] <= report["sms_rate_limit_per_s"]
    assert set(report["plan"]) == {"onboarding", "webinar", "satisfaction_survey", "nurture"}
    # The guards and plans again, alone, on the warehouse the bench left.
    result = subprocess.run([sys.executable, "-m", "nurture.cli", "bench", "--plan-only"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads(result.stdout)
    assert set(again["plan"]) == set(again["guard"]) == set(report["plan"])
    assert all(plan["seconds"] > 0 and "error" not in plan for plan in again["plan"].values())
    assert all(guard["passed"] for guard in again["guard"].values())


def allocate(gigabytes: int) -> dict:
    blocks = [bytearray(2**30) for _ in range(gigabytes)]
    return {"seconds": 0.0, "held": len(blocks)}


def test_a_stage_that_outgrows_its_memory_is_reported_not_fatal():
    limit = 4 * 2**30
    assert measure._in_child(allocate, 1, memory_limit=limit)["held"] == 1
    outgrown = measure._in_child(allocate, 8, memory_limit=limit)
    assert outgrown["error"] == "ran out of its 4 GB"
    assert outgrown["peak_rss_mb"] < 4 * 1024
