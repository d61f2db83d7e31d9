"""Every setting Nurture reads from the environment, in one place.

Paths default to the repository this package lives in, so `make run`, the tests and
`airflow standalone` all agree without configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("NURTURE_PROJECT_ROOT", Path(__file__).resolve().parents[2]))
DAGS_FOLDER = PROJECT_ROOT / "dags"
PLUGINS_FOLDER = PROJECT_ROOT / "plugins"
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DBT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
# A scheduled build builds and tests the data; the unit tests check the models' SQL, which
# a run does not change, so CI runs them (`make test`), as dbt advises.
DBT_SCHEDULED_BUILD_FLAGS = ("--exclude-resource-type", "unit_test")
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
TEMPLATES_DIR = PROJECT_ROOT / "include" / "templates"
AIRFLOW_SETTINGS_FILE = PROJECT_ROOT / "airflow_settings.yaml"

# Local state (embedded warehouse, emulator outbox, Airflow home): gitignored.
STATE_DIR = Path(os.environ.get("NURTURE_STATE_DIR", PROJECT_ROOT / ".nurture"))


def warehouse_url() -> str | None:
    """The PostgreSQL the programs read and write; None means the embedded one."""
    return os.environ.get("NURTURE_WAREHOUSE_URL") or None


def public_url() -> str | None:
    """Base URL at which providers reach the webhook receiver (status callbacks)."""
    url = os.environ.get("NURTURE_PUBLIC_URL")
    return url.rstrip("/") if url else None
