"""The emulator's outbox: every message the fake providers accepted, in a SQLite file.

A file (not memory) so that tests, the Airflow workers and `make run` — separate threads and
processes — all see the same outbox. WAL mode lets readers and writers work side by side;
each call opens its own short-lived connection, so the store is safe to share.
"""

from __future__ import annotations

import json
import sqlite3
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
        with closing(self._connect()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # A generous busy timeout: concurrent writers queue instead of failing.
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def add(self, message: dict[str, Any]) -> None:
        self.add_many([message])

    def add_many(self, messages: Iterable[dict[str, Any]]) -> None:
        """Store several records in one transaction (one API request = all or nothing)."""
        rows = [
            (*(message.get(name) for name in FIELDS), json.dumps(message.get("request") or {}))
            for message in messages
        ]
        placeholders = ", ".join("?" * (len(FIELDS) + 1))
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO outbox ({', '.join(FIELDS)}, request) VALUES ({placeholders})", rows
            )
            conn.execute("COMMIT")

    def messages(self) -> list[dict[str, Any]]:
        with closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT {', '.join(FIELDS)}, request FROM outbox ORDER BY seq"
            ).fetchall()
        return [{**dict(zip(FIELDS, row[:-1], strict=True)), "request": json.loads(row[-1])}
                for row in rows]

    def clear(self) -> None:
        with closing(self._connect()) as conn:
            conn.execute("DELETE FROM outbox")
