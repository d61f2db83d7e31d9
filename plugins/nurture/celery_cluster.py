"""Airflow as a team deploys it, on one machine: CeleryExecutor with a Redis broker, a
PostgreSQL metadata database, and each component its own process (`nurture airflow
--executor celery`, `make airflow-celery`).

Unlike `airflow standalone`, the scheduler hands task instances to Celery through Redis and
several `airflow celery worker`s run them, so the mapped `send` tasks of one run go out from
different workers at once. Airflow runs each task instance once at a time; what keeps two
batches, or a retry beside a zombie, from sending a message twice is the ledger's claim
(`ledger.claim_batch`: `for update skip locked`, rows marked `sending` before they leave).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from nurture import settings, warehouse
from nurture.exceptions import ConfigurationError

METADATA_DATABASE = "airflow"  # beside the warehouse's database, on the same server
WORKER_NAME_ENV = "NURTURE_WORKER_NAME"
STARTUP_S = 30


def configure(warehouse_url: str) -> Path:
    """Environment for Airflow under Celery; call it before airflow_env.configure(), whose
    SQLite and LocalExecutor defaults it replaces. What the environment already sets wins
    (a real metadata database, broker or home). Returns AIRFLOW_HOME."""
    home = Path(os.environ.setdefault("AIRFLOW_HOME",
                                      str(settings.STATE_DIR / "airflow-celery")))
    home.mkdir(parents=True, exist_ok=True)
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in os.environ:
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = metadata_database(warehouse_url)
    os.environ["AIRFLOW__CORE__EXECUTOR"] = "CeleryExecutor"
    # Every component signs or checks the same tokens: the scheduler's for the workers'
    # Execution API calls, the API server's for its sessions.
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", _shared_secret(home, "jwt"))
    os.environ.setdefault("AIRFLOW__API__SECRET_KEY", _shared_secret(home, "api"))
    return home


def metadata_database(warehouse_url: str) -> str:
    """SQLAlchemy URL of the `airflow` database on the warehouse's server, created if
    missing (the embedded server locally; in production the metadata database is its own)."""
    warehouse.ensure_database(warehouse_url, METADATA_DATABASE)
    return urlsplit(warehouse_url)._replace(scheme="postgresql+psycopg2",
                                            path=f"/{METADATA_DATABASE}").geturl()


def worker_hostname() -> str:
    """`[core] hostname_callable` of the workers: their Celery node name (worker1@host), so
    a task instance says which of several workers on one machine ran it."""
    return f"{os.environ.get(WORKER_NAME_ENV, 'worker')}@{socket.getfqdn()}"


def start_redis(home: Path) -> tuple[subprocess.Popen, str]:
    """Debian's redis-server on a free loopback port, nothing persisted; returns the process
    and the broker URL."""
    server = shutil.which("redis-server")
    if server is None:
        raise ConfigurationError("redis-server is missing: `make redis` installs Debian's "
                                 "package (apt-get install redis-server)")
    port = _free_port()
    data = home / "redis"
    data.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
         "no", "--dir", str(data), "--logfile", str(_log_dir(home) / "redis.log")],
        stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + STARTUP_S
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return process, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.1)
    process.kill()
    raise ConfigurationError(f"redis-server did not start: see {_log_dir(home) / 'redis.log'}")


def components(home: Path, *, port: int, workers: int,
               concurrency: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (airflow arguments, extra environment) of every process to run."""
    made: dict[str, tuple[list[str], dict[str, str]]] = {
        "api-server": (["api-server", "--port", str(port), "--workers", "1"], {}),
        "scheduler": (["scheduler"], {}),
        "dag-processor": (["dag-processor"], {}),
        # Its log server on a free port: 8794, the default, may be another Airflow's here.
        "triggerer": (["triggerer"],
                      {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port())}),
    }
    for number in range(1, workers + 1):
        name = f"worker{number}"
        # Workers on one machine share AIRFLOW_HOME, so its log files: the API server reads
        # them there, and no worker serves logs (they would all want the same port).
        made[name] = (
            ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
             str(concurrency), "--pid", str(home / f"{name}.pid"), "--skip-serve-logs"],
            {WORKER_NAME_ENV: name,
             "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname"},
        )
    return made


def start(home: Path, *, port: int, workers: int,
          concurrency: int) -> dict[str, subprocess.Popen]:
    """Redis (unless AIRFLOW__CELERY__BROKER_URL names a broker), then every component,
    each in its own process group, its output in AIRFLOW_HOME/process-logs/<name>.log."""
    started: dict[str, subprocess.Popen] = {}
    if "AIRFLOW__CELERY__BROKER_URL" not in os.environ:
        started["redis"], os.environ["AIRFLOW__CELERY__BROKER_URL"] = start_redis(home)
    airflow = Path(sys.executable).with_name("airflow")
    for name, (args, env) in components(home, port=port, workers=workers,
                                        concurrency=concurrency).items():
        with open(_log_dir(home) / f"{name}.log", "ab") as log:
            started[name] = subprocess.Popen(
                [str(airflow), *args], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **env}, start_new_session=True)
    return started


def _shared_secret(home: Path, name: str) -> str:
    path = home / f"{name}.secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _log_dir(home: Path) -> Path:
    path = home / "process-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
