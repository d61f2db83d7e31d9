"""The programs defined in `dags/`, found without Airflow's DagBag: for commands and pages
that need a program's definition (its steps, audience, templates), not its DAG.

Running a DAG file builds its DAG (Airflow, Cosmos), so each file's programs are kept
until the file changes: the Nurture pages ask on every request."""

from __future__ import annotations

import runpy
from pathlib import Path

from nurture import settings
from nurture.exceptions import NurtureError
from nurture.program import Program

_loaded: dict[Path, tuple[float, list[Program]]] = {}  # path -> (mtime, its programs)


def programs() -> dict[str, Program]:
    """Every Program a DAG file in dags/ defines at module level, by name."""
    found: dict[str, Program] = {}
    for path in sorted(settings.DAGS_FOLDER.glob("*.py")):
        found.update((program.name, program) for program in _programs_in(path))
    return found


def _programs_in(path: Path) -> list[Program]:
    mtime = path.stat().st_mtime
    if path not in _loaded or _loaded[path][0] != mtime:
        values = runpy.run_path(str(path)).values()
        _loaded[path] = (mtime, [value for value in values if isinstance(value, Program)])
    return _loaded[path][1]


def program(name: str) -> Program:
    known = programs()
    if name not in known:
        raise NurtureError(f"no program {name!r}; known: {', '.join(sorted(known))}")
    return known[name]
