"""Nurture's pages in the Airflow UI, rendered on the server (no scripts, everything
escaped): the programs with their last runs, one run's summary (also a tab of every DAG
run), and a step's message previewed for a chosen contact.

The Airflow plugin mounts this app in the API server at /nurture/ui and lists it in the UI's
navigation; the webhook receiver at /nurture is a separate app.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from nurture import settings
from nurture.exceptions import NurtureError
from nurture.program import Program
from nurture.ui import data
from nurture.ui.access import Access, AirflowAccess, NotSignedIn

TEMPLATES = Path(__file__).parent / "templates"
NO_WAREHOUSE = "the API server has no warehouse configured (NURTURE_WAREHOUSE_URL)"


def create_ui_app(access: Access | None = None) -> FastAPI:
    access = access or AirflowAccess()
    app = FastAPI(title="Nurture", docs_url=None, redoc_url=None, openapi_url=None)
    pages = _environment()

    def page(request: Request, name: str, status_code: int = 200, **context: Any
             ) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # where the app is mounted
        return HTMLResponse(pages.get_template(name).render(root=root, **context),
                            status_code=status_code)

    @app.exception_handler(NotSignedIn)
    async def sign_in_first(request: Request, _: NotSignedIn) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(access.login_url(target), status_code=303)

    async def visible_programs(request: Request) -> dict[str, Program]:
        user = await access.user(request)
        known = await run_in_threadpool(_programs)
        readable = access.readable(user, known)
        return {name: known[name] for name in sorted(readable)}

    @app.get("/", response_class=HTMLResponse)
    async def programs(request: Request) -> HTMLResponse:
        shown = await visible_programs(request)
        runs = await run_in_threadpool(_read, data.last_runs, shown)
        return page(request, "programs.html", programs=shown, runs=runs or {},
                    warehouse=runs is not None)

    @app.get("/runs/{program}/{dag_run_id:path}", response_class=HTMLResponse)
    async def run(request: Request, program: str, dag_run_id: str) -> HTMLResponse:
        shown = await visible_programs(request)
        if program not in shown:
            return page(request, "missing.html", 404,
                        what=f"{program} is not a Nurture program you may read")
        found = await run_in_threadpool(_read, data.run_summary, program, dag_run_id)
        return page(request, "run.html", program=shown[program], dag_run_id=dag_run_id, run=found)

    @app.get("/preview", response_class=HTMLResponse)
    async def preview(request: Request, program: str = "", step: str = "",
                      contact_id: str = "", locale: str = "") -> HTMLResponse:
        shown = await visible_programs(request)
        chosen = shown.get(program)
        contacts = (await run_in_threadpool(_read, data.sample_contacts, chosen)
                    if chosen else None) or []
        rendered, problem = None, None
        if chosen and step and contact_id.strip():
            rendered, problem = await run_in_threadpool(
                _render, chosen, step, contact_id.strip(), locale.strip() or None)
        return page(request, "preview.html", programs=shown, program=chosen, step=step,
                    contact_id=contact_id, locale=locale, contacts=contacts,
                    preview=rendered, problem=problem)

    return app


def _render(program: Program, step: str, contact_id: str,
            locale: str | None) -> tuple[Any, str | None]:
    """The preview, or why there is none."""
    from nurture.preview import render_preview  # imported here: only the pages need it

    if not settings.warehouse_url():
        return None, NO_WAREHOUSE
    try:
        with _warehouse() as conn:
            return render_preview(conn, program, step, contact_id, locale), None
    except NurtureError as err:
        return None, str(err)


def _read(query, *args):
    """`query(conn, *args)` on the warehouse; None when the API server has none."""
    if not settings.warehouse_url():
        return None
    with _warehouse() as conn:
        return query(conn, *args)


def _programs() -> dict[str, Program]:
    from nurture import catalog

    return catalog.programs()


@contextlib.contextmanager
def _warehouse() -> Iterator[Any]:
    from nurture import warehouse

    with warehouse.connect() as conn:
        yield conn


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["reasons"] = _reasons
    return env


def _reasons(counts: dict[str, int], earlier: bool = False) -> str:
    """`reason: count, ...`; with `earlier`, only what earlier runs decided (`already_*`,
    shown without the prefix), else only this run's reasons."""
    shown = {reason.removeprefix("already_"): count for reason, count in counts.items()
             if reason.startswith("already_") == earlier}
    return ", ".join(f"{reason}: {count}" for reason, count in shown.items()) or "-"
