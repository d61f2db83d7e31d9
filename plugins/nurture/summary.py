"""A run's summary: per step, what was sent and what was not, with reasons.

Built from the planner's counts and the dispatcher's outcomes, kept in
`nurture.run_summaries`, returned to XCom and printed by `nurture run`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from nurture.ledger import reason_category
from nurture.program import Program
from nurture.run_options import RunOptions

WAITING = ("not_due", "outside_send_window", "condition_not_yet_met", "frequency_cap_full",
           "run_limit_reached")
# Skips the dispatcher records when the audience changed between plan and send.
SEND_TIME_SKIPS = ("left_audience", "goal_reached_before_send", "no_consent_at_send")


def build(program: Program, plan_counts: Mapping[str, Mapping[str, int]],
          outcomes: Iterable[tuple[str, str, str, int]], *, dry_run: bool,
          guard: Mapping | None = None, options: RunOptions | None = None,
          tests: Sequence[Mapping] = ()) -> dict:
    """`plan_counts`: {step: {reason or "planned": n}} from the planner; `outcomes`: the
    ledger's (step, state, reason, n) for this run. Skips are counted once, from the plan.
    `options`: what the run was triggered with; `tests`: its test sends."""
    options = options or RunOptions(dry_run=dry_run)
    steps = {}
    for step in options.chosen_steps(program):
        not_sent: Counter = Counter()
        waiting: Counter = Counter()
        planned = 0
        for label, count in plan_counts.get(step.name, {}).items():
            if label == "planned":
                planned += count
            elif label in WAITING:
                waiting[label] += count
            else:
                not_sent[label] += count
        steps[step.name] = {"step": step.name, "channel": step.channel, "planned": planned,
                            "sent": 0, "not_sent": not_sent, "waiting": waiting}
    for step_name, state, reason, count in outcomes:
        if step_name not in steps:  # a step this run did not choose
            continue
        if state == "sent":
            steps[step_name]["sent"] += count
        elif state == "deferred":  # counted as waiting, from the plan
            continue
        elif state in ("planned", "sending"):  # a send task that never finished
            steps[step_name]["not_sent"]["not_dispatched"] += count
        elif state != "skipped" or reason in SEND_TIME_SKIPS:  # plan-time skips: counted
            steps[step_name]["not_sent"][reason_category(reason or state)] += count
    for entry in steps.values():
        entry["not_sent"] = dict(sorted(entry["not_sent"].items()))
        entry["waiting"] = dict(sorted(entry["waiting"].items()))
    return {
        "program": program.name,
        "dry_run": dry_run,
        "guard": dict(guard or {}),
        "steps": list(steps.values()),  # in program order
        "sent": sum(entry["sent"] for entry in steps.values()),
        "planned": sum(entry["planned"] for entry in steps.values()),
        "holdout": {"share": program.holdout,
                    "held_out": sum(e["not_sent"].get("held_out", 0) for e in steps.values())},
        "options": {"steps": list(options.steps), "send_limit": options.send_limit,
                    "filters": dict(options.filters)},
        "tests": [dict(test) for test in tests],
    }


def format_table(summary: Mapping) -> str:
    """The summary as a plain-text table for a terminal or a task log."""
    sent_header = "would send" if summary["dry_run"] else "sent"
    if summary.get("tests"):
        title = " (test run: only the test address got anything)"
    else:
        title = " (dry run: nothing sent)" if summary["dry_run"] else ""
    lines = [summary["program"] + title, ""]
    width = max([14, *(len(entry["step"]) + 2 for entry in summary["steps"])])
    lines[1] = f"{'step':<{width}}{'channel':<9}{sent_header:>11}  not sent (reason: count)"
    for entry in summary["steps"]:
        name = entry["step"]
        shown = entry["planned"] if summary["dry_run"] else entry["sent"]
        reasons = ", ".join(f"{r}: {n}" for r, n in entry["not_sent"].items()) or "-"
        lines.append(f"{name:<{width}}{entry['channel']:<9}{shown:>11}  {reasons}")
        if entry["waiting"]:
            waiting = ", ".join(f"{r}: {n}" for r, n in entry["waiting"].items())
            lines.append(f"{'':<{width + 9}}{'':>11}  waiting: {waiting}")
    if summary["sent"] == 0 and summary["planned"] == 0:
        lines.append("Nothing new to send: every due message is already in the ledger "
                     "or still waiting.")
    guard = summary.get("guard") or {}
    if guard:
        lines.append(f"guard: {'passed' if guard.get('success') else 'FAILED'} on "
                     f"{guard.get('row_count')} audience rows")
    holdout = summary.get("holdout") or {}
    if holdout.get("held_out"):
        lines.append(f"holdout ({holdout['share']:.0%} of the audience): "
                     f"{holdout['held_out']} message(s) held out")
    if quarantined := summary.get("quarantined"):
        reasons = ", ".join(f"{reason}: {n}" for reason, n in quarantined.items())
        lines.append(f"quarantined source rows (in no audience; see marts.contacts_quarantined):"
                     f" {reasons}")
    unknown = summary.get("unknown") or {}
    if unknown.get("reconciled") or unknown.get("still_unknown"):
        lines.append(f"unknown outcome (never re-sent): {unknown['reconciled']} since proved "
                     f"sent by provider events, {unknown['still_unknown']} still unknown")
    for test in summary.get("tests") or ():
        outcome = test["state"] + (f" ({test['reason']})" if test.get("reason") else "")
        lines.append(f"test: {test['step']} to {test['recipient']} (as contact "
                     f"{test['sample_contact_id']}): {outcome}")
    return "\n".join(lines)


def store(conn, summary: Mapping, *, dag_run_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute(
            """
            insert into nurture.run_summaries (program, dag_run_id, summary) values (%s, %s, %s)
            on conflict (program, dag_run_id)
            do update set summary = excluded.summary, finished_at = now()
            """,
            (summary["program"], dag_run_id, json.dumps(summary)),
        )


def load(conn, *, program: str, dag_run_id: str) -> dict | None:
    with conn.cursor() as cur:
        cur.execute(
            "select summary from nurture.run_summaries where program = %s and dag_run_id = %s",
            (program, dag_run_id),
        )
        row = cur.fetchone()
    return row[0] if row else None
