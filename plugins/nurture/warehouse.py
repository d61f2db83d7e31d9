"""The warehouse: any PostgreSQL named by NURTURE_WAREHOUSE_URL, or an embedded one.

The embedded server comes from the `pgserver` wheel but is started our own way: on
127.0.0.1 with a TCP port and a password, because Great Expectations, Airflow connections
and Cosmos all need a host name, and Cosmos's profile needs a password. PostgreSQL refuses
to run as root, so as root the server runs as pgserver's dedicated system user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from nurture import settings
from nurture.exceptions import ConfigurationError

EMBEDDED_USER = "postgres"
EMBEDDED_PASSWORD = "nurture"
EMBEDDED_DATABASE = "nurture"
SYSTEM_USER = "pgserver"


@dataclass(frozen=True)
class ConnectionParts:
    """A PostgreSQL URL split into the fields dbt's profile and psycopg2 want."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_url(cls, url: str) -> ConnectionParts:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ConfigurationError(
                f"NURTURE_WAREHOUSE_URL must look like postgresql://user:password@host:port/db; "
                f"got scheme {parts.scheme!r} and host {parts.hostname!r}"
            )
        return cls(
            host=parts.hostname,
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or "",
            database=parts.path.lstrip("/") or "postgres",
        )

    def dbt_env(self) -> dict[str, str]:
        """Environment read by dbt_project/profiles.yml."""
        return {
            "NURTURE_PG_HOST": self.host,
            "NURTURE_PG_PORT": str(self.port),
            "NURTURE_PG_USER": self.user,
            "NURTURE_PG_PASSWORD": self.password,
            "NURTURE_PG_DATABASE": self.database,
        }


class EmbeddedWarehouse:
    """A PostgreSQL 16 server in `data_dir`, kept running between commands."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "pgdata"
        self.port_file = data_dir / "port"

    @property
    def url(self) -> str:
        port = int(self.port_file.read_text())
        return (
            f"postgresql://{EMBEDDED_USER}:{EMBEDDED_PASSWORD}@127.0.0.1:{port}/{EMBEDDED_DATABASE}"
        )

    def start(self, port: int | None = None) -> str:
        """Initialise if new, start unless running (on `port`, else a free one), and
        return the URL."""
        initdb, pg_ctl = _pg_commands()

        user = self._system_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._prepare_dir(user)
            pwfile = self.data_dir / "pwfile"
            pwfile.write_text(EMBEDDED_PASSWORD)
            self._chown(pwfile, user)
            initdb(
                ["-U", EMBEDDED_USER, f"--pwfile={pwfile}", "--auth-local=trust",
                 "--auth-host=scram-sha-256", "--encoding=utf8", "--locale=C.UTF-8"],
                pgdata=self.pgdata, user=user,
            )
            pwfile.unlink()
        if not self.is_running():
            port = port or _free_port()
            pg_ctl(
                ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {self.pgdata}",
                 "-l", str(self.pgdata / "postgres.log"), "start"],
                pgdata=self.pgdata, user=user, timeout=60,
            )
            self.port_file.write_text(str(port))
        ensure_database(self.url, EMBEDDED_DATABASE)
        return self.url

    def restart(self) -> str:
        """Stop, then start again on the same port: URLs already handed out (connections,
        NURTURE_WAREHOUSE_URL) stay valid. Open connections are cut, as in a real restart."""
        port = int(self.port_file.read_text())
        self.stop()
        return self.start(port=port)

    def stop(self) -> None:
        _, pg_ctl = _pg_commands()

        if self.is_running():
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._system_user())

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists() or not self.port_file.exists():
            return False
        with contextlib.suppress(OSError), socket.create_connection(
            ("127.0.0.1", int(self.port_file.read_text())), timeout=1
        ):
            return True
        return False

    def _system_user(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_dir(self, user: str | None) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if user is None:
            return
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(user)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        self.data_dir.chmod(0o755)
        self._chown(self.pgdata, user)

    @staticmethod
    def _chown(path: Path, user: str | None) -> None:
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)


def ensure_database(url: str, name: str) -> None:
    """Create the database `name` on the server `url` points at, unless it exists."""
    import psycopg2

    admin = urlsplit(url)._replace(path="/postgres").geturl()
    with contextlib.closing(psycopg2.connect(admin)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'create database "{name}"')


def _pg_commands():
    """pgserver's initdb and pg_ctl wrappers (importing pgserver warns about XDG dirs, and it
    logs every command at INFO)."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import initdb, pg_ctl
    return initdb, pg_ctl


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve_url() -> str:
    """NURTURE_WAREHOUSE_URL if set, else the embedded warehouse (started if needed)."""
    url = settings.warehouse_url()
    if url:
        ConnectionParts.from_url(url)  # fail early and clearly on a malformed URL
        return url
    return EmbeddedWarehouse(settings.STATE_DIR / "warehouse").start()


def export_env(url: str) -> None:
    """Make `url` the warehouse for this process and everything it starts (dbt, tasks)."""
    os.environ["NURTURE_WAREHOUSE_URL"] = url
    os.environ.update(ConnectionParts.from_url(url).dbt_env())


@contextlib.contextmanager
def connect(url: str | None = None) -> Iterator:
    """A psycopg2 connection committed on success, rolled back on error, always closed."""
    import psycopg2

    url = url or settings.warehouse_url()
    if not url:
        raise ConfigurationError("no warehouse: set NURTURE_WAREHOUSE_URL or run `nurture seed`")
    conn = psycopg2.connect(url)
    try:
        with conn:
            yield conn
    finally:
        conn.close()
