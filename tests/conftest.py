"""Shared fixtures: real components started by the suite itself.

The environment is pointed at a throwaway state folder before anything imports Airflow,
so tests never touch the developer's `.nurture/` (their `make run` warehouse and outbox).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_STATE = Path(tempfile.mkdtemp(prefix="nurture-tests-"))
os.environ["NURTURE_STATE_DIR"] = str(_STATE)
os.environ.pop("NURTURE_WAREHOUSE_URL", None)
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE


@pytest.fixture(scope="session")
def warehouse_url(state_dir: Path):
    """A fresh embedded PostgreSQL for the whole session, stopped at the end."""
    from nurture.warehouse import EmbeddedWarehouse, export_env

    server = EmbeddedWarehouse(state_dir / "warehouse")
    url = server.start()
    export_env(url)
    yield url
    server.stop()
