"""`nurture report`: the BI marts as one self-contained HTML file — funnel by stage, program
performance over time, NPS trend, holdout vs treated — for people who would rather look
than query. Charts are inline SVG (nurture.charts); the page loads nothing from anywhere."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nurture import charts, settings, warehouse
from nurture.exceptions import NurtureError

TEMPLATE = settings.PROJECT_ROOT / "include" / "report.html"
MARTS = ("funnel_daily_snapshot", "program_performance", "program_holdout_comparison",
         "nps_by_month")
FUNNEL_STAGES = (("leads", "Lead"), ("mqls", "MQL"), ("sales_accepted", "Sales accepted"),
                 ("opportunities", "Opportunity"), ("customers", "Customer"))
STEP_COUNTS = ("planned", "sent", "delivered", "opened", "clicked", "bounced", "unsubscribed",
               "converted", "held_out")


@dataclass
class ReportData:
    """What the report shows, read from the marts (see `read`)."""

    funnel_as_of: date | None = None
    funnel: dict[str, int] = field(default_factory=dict)  # stage label -> contacts
    daily: dict[str, list[dict]] = field(default_factory=dict)  # program -> rows by day
    steps: list[dict] = field(default_factory=list)  # totals per program and step
    nps: list[dict] = field(default_factory=list)  # month, responses, nps
    holdout: list[dict] = field(default_factory=list)  # program_holdout_comparison rows


def write(out: Path, warehouse_url: str | None = None) -> Path:
    with warehouse.connect(warehouse_url) as conn:
        data = read(conn)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data, generated_at=datetime.now(UTC)), encoding="utf-8")
    return out


def read(conn) -> ReportData:
    from psycopg2.extras import RealDictCursor

    with conn.cursor(cursor_factory=RealDictCursor) as cur:
        cur.execute("select name from unnest(%s::text[]) as name"
                    " where to_regclass('marts.' || name) is null", (list(MARTS),))
        missing = [row["name"] for row in cur.fetchall()]
        if missing:
            raise NurtureError(f"the report reads marts the warehouse lacks ({', '.join(missing)})"
                               ": run `nurture dbt build` first")
        data = ReportData()
        cur.execute("select * from marts.funnel_daily_snapshot where snapshot_date ="
                    " (select max(snapshot_date) from marts.funnel_daily_snapshot)")
        cohorts = cur.fetchall()
        data.funnel_as_of = cohorts[0]["snapshot_date"] if cohorts else None
        data.funnel = {label: sum(row[column] for row in cohorts)
                       for column, label in FUNNEL_STAGES}
        cur.execute("select program, message_date, sum(sent) as sent, sum(opened) as opened,"
                    " sum(clicked) as clicked from marts.program_performance"
                    " group by program, message_date order by program, message_date")
        for row in cur.fetchall():
            data.daily.setdefault(row["program"], []).append(row)
        totals = ", ".join(f"sum({c}) as {c}" for c in STEP_COUNTS)
        cur.execute(f"select program, step, channel, {totals} from marts.program_performance"
                    " group by program, step, channel order by program, step")
        data.steps = cur.fetchall()
        cur.execute("select month, sum(responses) as responses, round(100.0 * (sum(promoters)"
                    " - sum(detractors)) / sum(responses), 1) as nps from marts.nps_by_month"
                    " group by month order by month")
        data.nps = cur.fetchall()
        cur.execute("select * from marts.program_holdout_comparison order by program")
        data.holdout = cur.fetchall()
    return data


def render(data: ReportData, *, generated_at: datetime) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(TEMPLATE.parent), autoescape=True,
                      undefined=StrictUndefined)
    env.filters["percent"] = lambda v: "–" if v is None else f"{float(v) * 100:.1f}%"
    env.filters["points"] = lambda v: "–" if v is None else f"{float(v) * 100:+.1f} pp"
    return env.get_template(TEMPLATE.name).render(
        data=data, generated_at=generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        funnel_chart=charts.bar_chart(list(data.funnel), list(data.funnel.values()),
                                      title="Contacts who reached each stage"),
        program_charts={program: _daily_chart(program, rows)
                        for program, rows in data.daily.items()},
        nps_chart=charts.line_chart(
            [row["month"].strftime("%Y-%m") for row in data.nps],
            {"NPS": [row["nps"] for row in data.nps]},
            title="Net Promoter Score by month", y_range=(-100, 100)) if data.nps else None,
    )


def _daily_chart(program: str, rows: list[dict]):
    """Sent, opened and clicked per day, days without messages drawn as zero."""
    by_day = defaultdict(lambda: {"sent": 0, "opened": 0, "clicked": 0},
                         {row["message_date"]: row for row in rows})
    first, last = rows[0]["message_date"], rows[-1]["message_date"]
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return charts.line_chart(
        [day.isoformat() for day in days],
        {label: [by_day[day][label] for day in days] for label in ("sent", "opened", "clicked")},
        title=f"{program}: messages per day",
    )
