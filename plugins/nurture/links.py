"""Short links for SMS: `{public_url}/s/{code}` redirects to a long signed URL.

A survey link carries a signed token of a couple of hundred characters — several SMS
segments on its own. The dispatcher stores the long URL under a random code (12 letters
and digits, 71 bits: not guessable, not enumerable) per message, and the receiver
redirects. A retried message keeps its code. Codes use no `-` or `_`: phones' link
detectors may cut such a character off the end of a URL. Codes from before still resolve.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping

from psycopg2.extras import execute_values

DDL = """
create table if not exists nurture.short_links (
    code text primary key,
    target text not null,
    ledger_id uuid not null unique,
    created_at timestamptz not null default now()
);
"""
CODE = re.compile(r"^[A-Za-z0-9_-]{12}$")
ALPHABET = string.ascii_letters + string.digits


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(12))


def shorten(conn, public_url: str, targets: Mapping[str, str]) -> dict[str, str]:
    """{ledger_id: long URL} -> {ledger_id: short URL}, stored in one statement."""
    if not targets:
        return {}
    rows = [(new_code(), target, ledger_id)
            for ledger_id, target in targets.items()]
    with conn.cursor() as cur:
        stored = execute_values(
            cur, "insert into nurture.short_links (code, target, ledger_id) values %s"
            " on conflict (ledger_id) do update set ledger_id = excluded.ledger_id"
            " returning ledger_id::text, code", rows, fetch=True)
    return {ledger_id: f"{public_url}/s/{code}" for ledger_id, code in stored}


def resolve(conn, code: str) -> str | None:
    if not CODE.fullmatch(code):
        return None
    with conn.cursor() as cur:
        cur.execute("select target from nurture.short_links where code = %s", (code,))
        row = cur.fetchone()
    return row[0] if row else None
