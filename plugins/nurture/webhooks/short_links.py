"""`GET /s/{code}`: the short links SMS carry (nurture.links), redirected to their target."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from nurture import links, warehouse
from nurture.webhooks.unsubscribe import PAGE


def short_link_router(warehouse_url: str) -> APIRouter:
    router = APIRouter()

    def lookup(code: str) -> str | None:
        from psycopg2.errors import UndefinedTable

        try:
            with warehouse.connect(warehouse_url) as conn:
                return links.resolve(conn, code)
        except UndefinedTable:  # no program has sent a short link yet
            return None

    @router.get("/s/{code}")
    async def follow(code: str):
        target = await run_in_threadpool(lookup, code) if links.CODE.fullmatch(code) else None
        if target is None:
            return HTMLResponse(PAGE.format(title="Link not found", body=(
                "<h1>This link is not valid</h1><p>Check that the whole link was copied.</p>")),
                status_code=404)
        return RedirectResponse(target, status_code=302,
                                headers={"Cache-Control": "no-store",
                                         "Referrer-Policy": "no-referrer"})

    return router
