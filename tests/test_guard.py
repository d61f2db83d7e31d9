"""The guard against a real PostgreSQL with real Great Expectations.

Each test writes its own `guard_test.onboarding_audience`, breaks it one way, and checks
the failure sentence names the expectation that caught it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nurture.exceptions import ConfigurationError, GuardFailed
from nurture.guard import row_count_bounds, validate
from nurture.warehouse import connect

SUITE = Path(__file__).resolve().parents[1] / "expectations" / "onboarding_audience.json"
SCHEMA, TABLE = "guard_test", "onboarding_audience"
NOW = datetime.now(UTC)
COLUMNS = """contact_id text, enrollment_id text, enrolled_at timestamptz, entry_source text,
    email text, phone text, first_name text, time_zone text, locale text,
    has_email_consent boolean, has_sms_consent boolean, is_activated boolean,
    activated_at timestamptz, source_loaded_at timestamptz"""


def audience(n: int = 200) -> list[dict]:
    """`n` clean rows; tests break some of them."""
    return [
        {"contact_id": f"c{i}", "enrollment_id": f"e{i}", "enrolled_at": NOW - timedelta(days=1),
         "entry_source": "signup" if i % 3 else "crm_customer", "email": f"user{i}@example.com",
         "phone": f"+1555{i:07d}" if i % 2 else None, "first_name": "Ada",
         "time_zone": "Europe/Paris", "locale": "fr-FR", "has_email_consent": True,
         "has_sms_consent": i % 2 == 1, "is_activated": i % 4 == 0,
         "activated_at": NOW if i % 4 == 0 else None,
         "source_loaded_at": NOW - timedelta(hours=1)}
        for i in range(n)
    ]


def load(url: str, rows: list[dict]) -> None:
    names = list(rows[0])
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"drop schema if exists {SCHEMA} cascade; create schema {SCHEMA}")
        cur.execute(f"create table {SCHEMA}.{TABLE} ({COLUMNS})")
        cur.executemany(
            f"insert into {SCHEMA}.{TABLE} ({', '.join(names)}) "
            f"values ({', '.join(['%s'] * len(names))})",
            [tuple(r[c] for c in names) for r in rows],
        )


def params(**overrides) -> dict:
    lo, hi = row_count_bounds(200)
    return {"min_rows": lo, "max_rows": hi, "fresh_after": NOW - timedelta(days=1)} | overrides


def run(url: str, rows: list[dict], **overrides):
    load(url, rows)
    return validate(suite_file=SUITE, warehouse_url=url, schema=SCHEMA, table=TABLE,
                    parameters=params(**overrides))


def test_clean_audience_passes(warehouse_url):
    import great_expectations  # noqa: F401 - paid once per process, kept out of the timing

    load(warehouse_url, audience())
    start = time.perf_counter()
    result = validate(suite_file=SUITE, warehouse_url=warehouse_url, schema=SCHEMA, table=TABLE,
                      parameters=params())
    print(f"guard validation took {time.perf_counter() - start:.2f}s")
    assert result.success, result.failures
    assert result.failures == () and result.row_count == 200
    assert json.loads(json.dumps(result.result))["statistics"]["evaluated_expectations"] == 10


def _null_emails(rows):
    for r in rows[:40]:
        r["email"] = None


def _duplicate_contact(rows):
    rows[1]["contact_id"] = rows[0]["contact_id"]


def _bad_phones(rows):
    for r in rows[1:41:2]:
        r["phone"] = "555-0100"


def _null_consent(rows):
    rows[7]["has_sms_consent"] = None


def _stale(rows):
    for r in rows:
        r["source_loaded_at"] = NOW - timedelta(days=3)


@pytest.mark.parametrize(("breakage", "named"), [
    (_null_emails, "expect_column_values_to_not_be_null on email failed: 40 unexpected"),
    (_duplicate_contact, "expect_column_values_to_be_unique on contact_id failed: 2 unexpected"),
    (_bad_phones, "expect_column_values_to_match_regex on phone failed: 20 unexpected"),
    (_null_consent, "expect_column_values_to_not_be_null on has_sms_consent failed: 1 unexpected"),
    (_stale, "expect_column_max_to_be_between on source_loaded_at failed: observed"),
])
def test_broken_audience_fails_naming_the_expectation(warehouse_url, breakage, named):
    rows = audience()
    breakage(rows)
    result = run(warehouse_url, rows)
    assert not result.success
    assert len(result.failures) == 1 and result.failures[0].startswith(named), result.failures


def test_tenfold_growth_fails_on_row_count(warehouse_url):
    result = run(warehouse_url, audience(2000))
    assert not result.success and result.row_count == 2000
    assert result.failures == (
        "expect_table_row_count_to_be_between failed: observed 2000, expected between 20 and 610",
    )


def test_a_few_invalid_emails_pass(warehouse_url):
    rows = audience()
    rows[3]["email"], rows[4]["email"] = "not-an-email", "two@@example"
    assert run(warehouse_url, rows).success


@pytest.mark.parametrize("as_type", [datetime, str], ids=["aware-datetime", "iso-string"])
def test_freshness_parameter_is_compared_with_timestamptz(warehouse_url, as_type):
    """Both an aware datetime and an ISO string with offset work; the boundary is exact."""
    loaded = NOW - timedelta(hours=1)

    def fresh_after(value):
        return value if as_type is datetime else value.isoformat()

    assert run(warehouse_url, audience(), fresh_after=fresh_after(loaded)).success
    late = run(warehouse_url, audience(), fresh_after=fresh_after(loaded + timedelta(seconds=1)))
    assert not late.success and "source_loaded_at" in late.failures[0]


def test_naive_datetime_is_refused(warehouse_url):
    with pytest.raises(ConfigurationError, match="fresh_after"):
        run(warehouse_url, audience(), fresh_after=datetime.now())  # noqa: DTZ005


def test_missing_parameter_is_a_configuration_error(warehouse_url):
    load(warehouse_url, audience())
    with pytest.raises(ConfigurationError, match="max_rows"):
        validate(suite_file=SUITE, warehouse_url=warehouse_url, schema=SCHEMA, table=TABLE,
                 parameters={"min_rows": 1, "fresh_after": NOW})


def test_missing_table_refuses(warehouse_url):
    with pytest.raises(GuardFailed, match="guard_test.nope does not exist"):
        validate(suite_file=SUITE, warehouse_url=warehouse_url, schema=SCHEMA, table="nope",
                 parameters=params())


@pytest.mark.parametrize("content", [
    "{not json",
    '{"name": "s"}',
    '{"name": "s", "expectations": [{"type": "expect_no_such_thing", "kwargs": {}}]}',
    '{"name": "s", "expectations": [], "bogus": 1}',
])
def test_unreadable_suite_is_a_configuration_error(warehouse_url, tmp_path, content):
    load(warehouse_url, audience(5))
    (tmp_path / "suite.json").write_text(content)
    with pytest.raises(ConfigurationError):
        validate(suite_file=tmp_path / "suite.json", warehouse_url=warehouse_url,
                 schema=SCHEMA, table=TABLE, parameters=params())


def test_every_expectation_says_why():
    suite = json.loads(SUITE.read_text())
    assert suite["name"] == "onboarding_audience"
    assert all(e["meta"]["notes"] for e in suite["expectations"])


def test_row_count_bounds():
    assert row_count_bounds(None) == (1, 10_000_000)
    assert row_count_bounds(200) == (20, 610)
    assert row_count_bounds(0) == (0, 10)
    assert row_count_bounds(3) == (0, 19)
    assert row_count_bounds(1000, max_growth=1.5, max_shrink=2) == (500, 1510)
    lo, hi = row_count_bounds(200)
    assert not lo <= 2000 <= hi and lo <= 200 <= hi
    with pytest.raises(ValueError):
        row_count_bounds(-1)
    with pytest.raises(ValueError):
        row_count_bounds(10, max_growth=0.5)


def test_a_view_is_guarded_on_a_snapshot_read_once_and_dropped(warehouse_url):
    """GX runs a query per expectation and a view is worked out again by each, so a view is
    read once into a table the whole suite checks (every expectation sees the same rows)."""
    rows = audience()
    _duplicate_contact(rows)
    load(warehouse_url, rows)
    with connect(warehouse_url) as conn, conn.cursor() as cur:
        cur.execute(f"create view {SCHEMA}.audience_view as select * from {SCHEMA}.{TABLE}")

    result = validate(suite_file=SUITE, warehouse_url=warehouse_url, schema=SCHEMA,
                      table="audience_view", parameters=params())

    assert not result.success and result.row_count == 200
    assert [f.split(":")[0] for f in result.failures] == [
        "expect_column_values_to_be_unique on contact_id failed"]
    checked = {r["expectation_config"]["kwargs"]["batch_id"] for r in result.result["results"]}
    assert len(checked) == 1 and "guard_snapshot_audience_view_" in checked.pop()
    with connect(warehouse_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from pg_tables where tablename like 'guard_snapshot_%'")
        assert cur.fetchone() == (0,)


def test_a_view_snapshot_keeps_only_the_columns_the_suite_checks():
    """GX's uniqueness check carries every column of the table through its join: the
    snapshot keeps what the expectations name, unless one looks at the table as a whole."""
    from nurture.guard import _checked_columns

    suite = json.loads(SUITE.read_text())
    assert _checked_columns(suite) == ["contact_id", "email", "phone", "has_email_consent",
                                       "has_sms_consent", "is_activated", "source_loaded_at"]
    column_set = {"type": "expect_table_columns_to_match_set",
                  "kwargs": {"column_set": ["contact_id"]}}
    conditional = {"type": "expect_column_values_to_not_be_null",
                   "kwargs": {"column": "email", "row_condition": 'locale=="fr-FR"',
                              "condition_parser": "great_expectations"}}
    for whole_table in (column_set, conditional):
        assert _checked_columns({"expectations": [*suite["expectations"], whole_table]}) is None


def test_a_view_snapshot_leaves_unchecked_columns_unread(warehouse_url):
    """A column no expectation names is never worked out: here one that cannot be."""
    load(warehouse_url, audience())
    with connect(warehouse_url) as conn, conn.cursor() as cur:
        cur.execute(f"create view {SCHEMA}.audience_view as select *,"
                    " 1 / (length(contact_id) - length(contact_id)) as unchecked"
                    f" from {SCHEMA}.{TABLE}")

    result = validate(suite_file=SUITE, warehouse_url=warehouse_url, schema=SCHEMA,
                      table="audience_view", parameters=params())

    assert result.success and result.row_count == 200
