"""Who may see the pages: someone signed in to Airflow who may read the program's DAG.

The pages show contacts' data (a preview renders a real contact's message), so they take
Airflow's own session — the `_token` cookie the UI's login sets, or a bearer token from
`POST /auth/token` — and ask Airflow's auth manager, as Airflow's own API does. A plugin's
FastAPI app is not protected by Airflow by itself; this is what protects it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from fastapi import Request


class NotSignedIn(Exception):
    """No valid Airflow session: the page sends the browser to Airflow's login."""


class Access(Protocol):
    async def user(self, request: Request) -> Any: ...

    def readable(self, user: Any, programs: Iterable[str]) -> set[str]: ...

    def login_url(self, next_url: str) -> str: ...


class AirflowAccess:
    """Access as the Airflow API server decides it (its auth manager)."""

    async def user(self, request: Request) -> Any:
        from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
        from airflow.api_fastapi.core_api.security import resolve_user_from_token
        from fastapi import HTTPException

        header = request.headers.get("authorization", "")
        token = (header[7:] if header.lower().startswith("bearer ")
                 else request.cookies.get(COOKIE_NAME_JWT_TOKEN))
        try:
            return await resolve_user_from_token(token)
        except HTTPException as err:  # none, expired or forged
            raise NotSignedIn(err.detail) from err

    def readable(self, user: Any, programs: Iterable[str]) -> set[str]:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().filter_authorized_dag_ids(dag_ids=set(programs), user=user,
                                                            method="GET")

    def login_url(self, next_url: str) -> str:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
