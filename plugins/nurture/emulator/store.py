"""The emulator's outbox: every message the fake providers accepted, in a SQLite file.

A file (not memory) so that tests, the Airflow workers and `make run` — separate threads and
processes — all see the same outbox. WAL mode lets readers and writers work side by side;
reads open their own short-lived connection, writes share one long-lived connection per
process under a lock (closing the last connection checkpoints the WAL to disk: per message,
that would cost a disk sync each), so the store is safe to share.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

FIELDS = (
    "message_id", "channel", "recipient", "sender", "subject", "text", "html",
    "program", "step", "ledger_id", "received_at",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{name} TEXT" for name in FIELDS)},
    request TEXT NOT NULL
)
"""


class OutboxStore:
    """Append-only record of accepted messages, oldest first."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._writer: tuple[int, sqlite3.Connection] | None = None  # (pid, connection)
        with closing(self._connect()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # A generous busy timeout: concurrent writers queue instead of failing. No fsync per
        # commit (WAL's NORMAL): an emulator's outbox need not survive a power cut, and a
        # thousand sends a second must not wait on the disk.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _writer_connection(self) -> sqlite3.Connection:
        """This process's writing connection (a forked child makes its own)."""
        if self._writer is None or self._writer[0] != os.getpid():
            self._writer = (os.getpid(), self._connect())
        return self._writer[1]

    def add(self, message: dict[str, Any]) -> None:
        self.add_many([message])

    def add_many(self, messages: Iterable[dict[str, Any]]) -> None:
        """Store several records in one transaction (one API request = all or nothing)."""
        rows = [
            (*(message.get(name) for name in FIELDS), json.dumps(message.get("request") or {}))
            for message in messages
        ]
        placeholders = ", ".join("?" * (len(FIELDS) + 1))
        with self._lock:
            conn = self._writer_connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(f"INSERT INTO outbox ({', '.join(FIELDS)}, request)"
                                 f" VALUES ({placeholders})", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def messages(self) -> list[dict[str, Any]]:
        with closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT {', '.join(FIELDS)}, request FROM outbox ORDER BY seq"
            ).fetchall()
        return [{**dict(zip(FIELDS, row[:-1], strict=True)), "request": json.loads(row[-1])}
                for row in rows]

    def clear(self) -> None:
        with self._lock:
            self._writer_connection().execute("DELETE FROM outbox")
