"""Shared fixtures: real components started by the suite itself.

The environment is pointed at a throwaway state folder before anything imports Airflow,
so tests never touch the developer's `.nurture/` (their `make run` warehouse and outbox).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

_STATE = Path(tempfile.mkdtemp(prefix="nurture-tests-"))
os.environ["NURTURE_STATE_DIR"] = str(_STATE)
for _key in ("NURTURE_WAREHOUSE_URL", "NURTURE_PUBLIC_URL", "AIRFLOW_HOME"):
    os.environ.pop(_key, None)

from nurture import airflow_env  # noqa: E402

airflow_env.configure()  # before anything imports airflow and reads its config

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_STATE, ignore_errors=True)  # the fixtures, warehouse too, have stopped


_module_started: dict[str, float] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Print how long each module took, as it ends: the e2e modules dominate the suite's
    duration, and CI shows this even when it stops a run that is too slow."""
    module = item.nodeid.split("::")[0]
    _module_started.setdefault(module, time.perf_counter())
    result = yield
    if nextitem is None or nextitem.nodeid.split("::")[0] != module:
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            took = time.perf_counter() - _module_started[module]
            reporter.write(f" [{took:.0f} s]")
    return result


@pytest.fixture(scope="session")
def warehouse_url(state_dir: Path):
    """A fresh embedded PostgreSQL for the whole session, stopped at the end."""
    from nurture.warehouse import EmbeddedWarehouse, export_env

    server = EmbeddedWarehouse(state_dir / "warehouse")
    url = server.start()
    export_env(url)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def airflow_db(state_dir: Path) -> Path:
    """Airflow's metadata database, migrated, with airflow_settings.yaml loaded."""
    from nurture import runner, settings

    if not settings.DBT_MANIFEST.exists():
        pytest.fail("dbt_project/target/manifest.json is missing: run the suite with `make test`")
    runner.prepare_airflow()
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture
def emulator(tmp_path: Path):
    """The provider emulator in a thread, with the connections pointed at it (it posts no
    events back: the tests using it are about sending)."""
    from nurture.emulator import OutboxStore
    from nurture.runner import emulated_providers

    outbox = tmp_path / "outbox.sqlite"
    with emulated_providers(outbox, events=False) as providers:
        yield providers.url, OutboxStore(outbox)


@pytest.fixture
def emulator_apart(tmp_path: Path, monkeypatch):
    """The emulator in its own process, as a provider is, with the connections pointed at
    it: for what its clock measures (a send rate), which an in-process server's would not
    do faithfully (it would wait on this process's threads for the interpreter lock)."""
    from nurture.bench.dispatch import emulator_process
    from nurture.emulator import OutboxStore
    from nurture.runner import emulator_connections

    outbox = tmp_path / "outbox.sqlite"
    with emulator_process(outbox) as url:
        for key, value in emulator_connections(url).items():
            monkeypatch.setenv(key, value)
        yield url, OutboxStore(outbox)
