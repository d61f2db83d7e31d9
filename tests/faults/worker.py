"""A worker process for the fault scenarios: one run of a program's DAG, as `nurture run`
makes it, in a process of its own that a scenario can kill or run beside another.

    python tests/faults/worker.py PROGRAM SKIP_TASKS_REGEX
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

from nurture import dag_factory, runner

RETRY_DELAY = timedelta(seconds=1)


def quick_retries(build):
    """`build_dag` with retries a second apart: `dag.test()` waits out each retry delay."""

    def build_dag(program):
        dag = build(program)
        for task in dag.tasks:
            task.retry_delay = RETRY_DELAY
        return dag

    return build_dag


def main(program: str, skip_tasks: str) -> None:
    dag_factory.build_dag = quick_retries(dag_factory.build_dag)
    result = runner.run_program(program, skip_tasks=skip_tasks)
    print(json.dumps({"run_id": result.run_id, "state": result.state}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
