"""Each e2e module starts the onboarding program from a clean slate: no ledger rows and no
provider events left by another module."""

from __future__ import annotations

import pytest

from nurture import ledger, warehouse
from nurture.webhooks.storage import PROVIDER_EVENT_TABLES


def reset_onboarding() -> None:
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        cur.execute("delete from nurture.message_ledger where program = 'onboarding'")
        cur.execute("truncate " + ", ".join(PROVIDER_EVENT_TABLES))


@pytest.fixture(scope="module")
def fresh_onboarding(warehouse_url, airflow_db) -> None:
    reset_onboarding()
