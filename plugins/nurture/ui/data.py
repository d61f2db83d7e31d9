"""What the pages show, read from the warehouse: run summaries (`nurture.run_summaries`,
written by each run's summarize task) and contact ids to preview a step for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from nurture.program import Program

RUNS_PER_PROGRAM = 5
SAMPLE_CONTACTS = 50


@dataclass(frozen=True)
class RunRow:
    """One run as a row of the programs page."""

    program: str
    dag_run_id: str
    finished_at: datetime
    summary: dict

    @property
    def kind(self) -> str:
        if self.summary.get("tests"):
            return "test send"
        return "dry run" if self.summary.get("dry_run") else "sent"

    @property
    def not_sent(self) -> int:
        """Messages this run decided not to send (not those decided by earlier runs)."""
        return sum(count for step in self.summary["steps"]
                   for reason, count in step["not_sent"].items()
                   if not reason.startswith("already_"))

    @property
    def waiting(self) -> int:
        return sum(sum(step["waiting"].values()) for step in self.summary["steps"])


def last_runs(conn, programs: Iterable[str],
              per_program: int = RUNS_PER_PROGRAM) -> dict[str, list[RunRow]]:
    """The latest runs of each program, newest first."""
    names = list(programs)
    found: dict[str, list[RunRow]] = {name: [] for name in names}
    if not _table_exists(conn, "nurture.run_summaries"):
        return found
    with conn.cursor() as cur:
        cur.execute(
            """
            select program, dag_run_id, finished_at, summary
              from (select *, row_number() over (partition by program
                                                 order by finished_at desc) as recency
                      from nurture.run_summaries where program = any(%s)) as ranked
             where recency <= %s
             order by program, finished_at desc
            """,
            (names, per_program),
        )
        for program, run_id, finished_at, summary in cur:
            found[program].append(RunRow(program, run_id, finished_at, summary))
    return found


def run_summary(conn, program: str, dag_run_id: str) -> RunRow | None:
    if not _table_exists(conn, "nurture.run_summaries"):
        return None
    with conn.cursor() as cur:
        cur.execute("select finished_at, summary from nurture.run_summaries"
                    " where program = %s and dag_run_id = %s", (program, dag_run_id))
        row = cur.fetchone()
    return RunRow(program, dag_run_id, *row) if row else None


def sample_contacts(conn, program: Program, limit: int = SAMPLE_CONTACTS) -> list[str]:
    """Contact ids from the program's audience, to pick one to preview for."""
    table = f"marts.{program.audience}"  # a checked identifier (Program validates it)
    if not _table_exists(conn, table):
        return []
    with conn.cursor() as cur:
        cur.execute(f"select distinct contact_id from {table} order by contact_id limit %s",
                    (limit,))
        return [contact_id for (contact_id,) in cur]


def _table_exists(conn, name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s) is not null", (name,))
        return cur.fetchone()[0]
