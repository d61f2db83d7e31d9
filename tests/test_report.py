"""`nurture report` on the embedded PostgreSQL: one HTML file that loads nothing from
anywhere, draws its charts as inline SVG, and shows hostile data as text, never markup."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from psycopg2.extras import execute_values

from nurture import seed, warehouse
from nurture.charts import bar_chart, line_chart
from nurture.webhooks.storage import PROVIDER_EVENT_TABLES

CLEAR_SENDS = ("truncate nurture.message_ledger, raw.survey_responses, "
               + ", ".join(PROVIDER_EVENT_TABLES))
HOSTILE = "<script>alert('pwned')</script>"
HOSTILE_STEP = 'welcome"><img src=x onerror=alert(1)>'


def nurture(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nurture.cli", *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def report(warehouse_url, tmp_path_factory):
    """The demo, a few days of a program whose name and step are markup, and a survey."""
    now = datetime.now(UTC)
    ledger, events = [], []
    for n in range(12):
        ledger_id, day = str(uuid.uuid4()), now - timedelta(days=n % 3, hours=1)
        held_out = n % 4 == 0
        ledger.append((ledger_id, HOSTILE, HOSTILE_STEP, f"C{n + 1:05d}", f"x:{n}", "email",
                       "skipped" if held_out else "sent", "held_out" if held_out else None,
                       None if held_out else "abc123", day, day, None if held_out else day))
        for event in () if held_out else ("delivered", "open"):
            events.append((f"report-{n}-{event}", event, json.dumps(
                {"ledger_id": ledger_id, "timestamp": int(day.timestamp()) + 60})))
    with warehouse.connect() as conn, conn.cursor() as cur:
        seed.load(conn, seed.build())
        cur.execute(CLEAR_SENDS)
        execute_values(cur, "insert into nurture.message_ledger (ledger_id, program, step,"
                       " contact_id, enrollment_id, channel, state, reason, template_version,"
                       " due_at, planned_at, sent_at) values %s", ledger)
        execute_values(cur, "insert into raw.sendgrid_events (sg_event_id, event, payload)"
                       " values %s", events)
        cur.execute("insert into raw.survey_responses (survey_id, contact_id, channel, trigger,"
                    " score, issued_at) values ('report-survey', 'C00001', 'email',"
                    " 'onboarding_30d', 9, now())")
    built = nurture("dbt", "run", "--quiet", "-s", "+funnel_daily_snapshot",
                    "+program_performance", "+program_holdout_comparison", "+nps_by_month")
    assert built.returncode == 0, built.stdout + built.stderr
    out = tmp_path_factory.mktemp("report") / "report.html"
    written = nurture("report", "--out", str(out))
    assert written.returncode == 0, written.stdout + written.stderr
    assert str(out) in written.stdout
    yield out.read_text(encoding="utf-8")
    with warehouse.connect() as conn, conn.cursor() as cur:  # later modules start clean
        cur.execute(CLEAR_SENDS)


def test_the_report_draws_each_section_as_inline_svg(report):
    assert report.count("<svg") == 3  # the funnel, the one program's days, the NPS trend
    for heading in ("Lifecycle funnel", "Program performance", "Holdout vs treated",
                    "Net Promoter Score"):
        assert f"<h2>{heading}</h2>" in report
    assert "<title>Lead: 30</title>" in report  # the demo's 30 leads, all cohorts
    assert "<title>NPS, " in report and ": 100</title>" in report  # one promoter


def test_the_report_loads_nothing_from_anywhere(report):
    assert not re.search(r"<(script|link|iframe|object|embed)\b", report, re.IGNORECASE)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", report, re.IGNORECASE)
    assert "@import" not in report and "url(" not in report


def test_data_in_the_report_is_escaped(report):
    assert HOSTILE not in report and "<img" not in report
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in report
    assert "welcome&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in report


def test_without_the_marts_it_says_to_build_them(report):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("alter table marts.nps_by_month rename to nps_by_month_away")
    try:
        result = nurture("report", "--out", "/dev/null")
    finally:
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute("alter table marts.nps_by_month_away rename to nps_by_month")
    assert result.returncode == 1
    assert "nps_by_month" in result.stderr and "run `nurture dbt build` first" in result.stderr


def test_charts_escape_labels_and_scale_to_the_largest_value():
    bars = bar_chart(["a<b", "c"], [10, 5], title="t&t")
    assert "a&lt;b" in bars and "t&amp;t" in bars and "a<b" not in bars
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', bars)]
    assert heights[0] == pytest.approx(2 * heights[1])
    lines = line_chart(["d1", "d2", "d3"], {"<s>": [1, None, 3]}, title="x")
    assert "&lt;s&gt;" in lines and lines.count("<circle") == 2
