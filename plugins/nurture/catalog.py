"""The programs defined in `dags/`, found without Airflow's DagBag: for commands and pages
that need a program's definition (its steps, audience, templates), not its DAG."""

from __future__ import annotations

import runpy

from nurture import settings
from nurture.exceptions import NurtureError
from nurture.program import Program


def programs() -> dict[str, Program]:
    """Every Program a DAG file in dags/ defines at module level, by name."""
    found: dict[str, Program] = {}
    for path in sorted(settings.DAGS_FOLDER.glob("*.py")):
        for value in runpy.run_path(str(path)).values():
            if isinstance(value, Program):
                found[value.name] = value
    return found


def program(name: str) -> Program:
    known = programs()
    if name not in known:
        raise NurtureError(f"no program {name!r}; known: {', '.join(sorted(known))}")
    return known[name]
