"""One emulator per test session (it starts in well under a second), a clean outbox per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nurture.emulator import OutboxStore, run_in_thread

CREDENTIALS = {
    "sendgrid_api_key": "SG.emulator-test-key",
    "twilio_account_sid": "AC" + "0123456789abcdef" * 2,
    "twilio_auth_token": "emulator-test-token",
}
# The providers' published API descriptions live beside the repository, in shared/contracts.
CONTRACTS_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "contracts"


@pytest.fixture(scope="session")
def outbox_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emulator") / "outbox.sqlite3"


@pytest.fixture(scope="session")
def emulator_url(outbox_path: Path) -> Iterator[str]:
    with run_in_thread(outbox_path, **CREDENTIALS) as url:
        yield url


@pytest.fixture
def outbox(emulator_url: str, outbox_path: Path) -> OutboxStore:
    """The running emulator's outbox, emptied before the test."""
    store = OutboxStore(outbox_path)
    store.clear()
    return store
