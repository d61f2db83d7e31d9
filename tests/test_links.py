"""Short links on the embedded PostgreSQL: one unguessable code per message, kept when the
message is retried, resolved back to the long URL it stands for."""

from __future__ import annotations

import re
import uuid

import pytest

from nurture import ledger, links, warehouse

PUBLIC_URL = "https://hooks.nurture.example"
SHORT = re.compile(re.escape(PUBLIC_URL) + r"/s/([A-Za-z0-9_-]{12})")


@pytest.fixture
def conn(warehouse_url):
    with warehouse.connect(warehouse_url) as conn:
        ledger.ensure_schema(conn)
        yield conn


def long_url() -> str:
    return f"{PUBLIC_URL}/survey/{uuid.uuid4().hex}{uuid.uuid4().hex}"


def targets(n: int) -> dict[str, str]:
    return {str(uuid.uuid4()): long_url() for _ in range(n)}


def code_of(short_url: str) -> str:
    match = SHORT.fullmatch(short_url)
    assert match, short_url
    return match.group(1)


def stored(conn, ledger_ids) -> dict[str, tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute("select ledger_id::text, code, target from nurture.short_links"
                    " where ledger_id::text = any(%s)", (list(ledger_ids),))
        return {ledger_id: (code, target) for ledger_id, code, target in cur.fetchall()}


def test_each_message_gets_its_own_url_safe_code(conn):
    wanted = targets(5)
    short = links.shorten(conn, PUBLIC_URL, wanted)
    assert set(short) == set(wanted)
    codes = {ledger_id: code_of(url) for ledger_id, url in short.items()}
    assert len(set(codes.values())) == len(wanted)
    assert stored(conn, wanted) == {ledger_id: (codes[ledger_id], target)
                                    for ledger_id, target in wanted.items()}
    for ledger_id, target in wanted.items():
        assert links.resolve(conn, codes[ledger_id]) == target


def test_a_retried_message_keeps_its_code_and_target(conn):
    """A retry signs a new token (a new long URL): the SMS that may already have gone out
    carries the first code, which must go on leading where it did."""
    first = targets(2)
    before = links.shorten(conn, PUBLIC_URL, first)
    retried = {ledger_id: long_url() for ledger_id in first}
    fresh = targets(1)
    after = links.shorten(conn, PUBLIC_URL, {**retried, **fresh})
    assert {k: after[k] for k in first} == before
    assert set(after) == set(first) | set(fresh)
    for ledger_id, url in before.items():
        assert links.resolve(conn, code_of(url)) == first[ledger_id]
    assert len(stored(conn, [*first, *fresh])) == 3


def test_more_targets_than_one_statement_page(conn):
    """execute_values sends 100 rows a page: every page's codes come back."""
    wanted = targets(250)
    short = links.shorten(conn, PUBLIC_URL, wanted)
    assert set(short) == set(wanted)
    assert len({code_of(url) for url in short.values()}) == 250
    assert len(stored(conn, wanted)) == 250


def test_codes_are_letters_and_digits_so_no_link_detector_cuts_their_end(conn):
    """A URL ending in `-` or `_` may lose that character to a phone's link detector."""
    codes = [code_of(url) for url in links.shorten(conn, PUBLIC_URL, targets(400)).values()]
    assert all(code.isascii() and code.isalnum() for code in codes), codes


def test_a_code_from_before_with_dash_or_underscore_still_resolves(conn):
    ledger_id, target = str(uuid.uuid4()), long_url()
    with conn.cursor() as cur:
        cur.execute("insert into nurture.short_links (code, target, ledger_id)"
                    " values ('old_code-12x', %s, %s)", (target, ledger_id))
    assert links.resolve(conn, "old_code-12x") == target


def test_nothing_to_shorten_touches_nothing():
    assert links.shorten(None, PUBLIC_URL, {}) == {}


def test_an_unknown_code_resolves_to_none(conn):
    assert links.resolve(conn, "A" * 12) is None
    assert links.resolve(conn, "abc_DEF-1234") is None


@pytest.mark.parametrize("code", [
    "", "short", "A" * 11, "A" * 13, "abcdefghijk.", "abcdefghijk/", "../../etc/pw",
    "..%2F..%2Fetc", "abcdefghijkl\n", " abcdefghijk", "abcdéfghijkl", "abc'; drop--",
])
def test_a_malformed_code_resolves_to_none_without_a_query(code):
    class NoDatabase:
        def cursor(self):
            raise AssertionError("a malformed code must not reach the database")

    assert links.resolve(NoDatabase(), code) is None
