"""When the audience looks wrong, the onboarding DAG sends nothing and says why.

Each scenario tampers with the built audience table the way a broken load or model would,
then runs the DAG through Airflow with the dbt tasks marked done (so the tampering is what
the guard sees) against the emulator.
"""

from __future__ import annotations

import pytest

from nurture import runner, seed, warehouse
from nurture.emulator import OutboxStore

pytestmark = pytest.mark.e2e
AUDIENCE = "marts.onboarding_audience"


@pytest.fixture(scope="module")
def baseline(fresh_onboarding, tmp_path_factory):
    """Demo data, dbt built and one good guard result, recorded by a dry run (no ledger rows)."""
    with warehouse.connect() as conn:
        seed.load(conn, seed.build())
    result = runner.run_program("onboarding", dry_run=True)
    assert result.state == "success"
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("create schema if not exists guard_e2e")
        cur.execute(f"drop table if exists guard_e2e.audience; "
                    f"create table guard_e2e.audience as select * from {AUDIENCE}")
    return result.summary["guard"]["row_count"]


@pytest.fixture
def tampered(baseline):
    yield
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(f"truncate {AUDIENCE}; insert into {AUDIENCE} select * from guard_e2e.audience")


def execute(sql: str) -> None:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)


def ledger_rows() -> int:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select count(*) from nurture.message_ledger where program = 'onboarding'")
        return cur.fetchone()[0]


def run_guarded(tmp_path):
    outbox = tmp_path / "outbox.sqlite"
    before = ledger_rows()
    with runner.emulated_providers(outbox):
        result = runner.run_program("onboarding", skip_tasks=r"dbt.*")
    assert OutboxStore(outbox).messages() == [], "nothing may be sent"
    assert ledger_rows() == before, "nothing may be planned"
    assert result.state.endswith("failed")
    assert result.summary["guard"]["success"] is False
    return result.summary["guard"]["failures"]


def failed_expectations(failures) -> set[str]:
    return {failure.split(" ", 1)[0] for failure in failures}


def test_null_emails_stop_the_send(tampered, tmp_path):
    execute(f"update {AUDIENCE} set email = null where contact_id <= 'C00150'")
    failures = run_guarded(tmp_path)
    assert "expect_column_values_to_not_be_null" in failed_expectations(failures)
    assert any("on email" in failure for failure in failures)


def test_duplicate_contacts_stop_the_send(tampered, tmp_path):
    # The mart's contract makes contact_id a primary key, and a unique index keeps its
    # enrollment ids unique; the guard must hold even where a warehouse does not enforce
    # them, so drop both here.
    execute(f"""
        do $$ declare key text; unique_index text; begin
            select conname into key from pg_constraint
             where conrelid = '{AUDIENCE}'::regclass and contype = 'p';
            execute format('alter table {AUDIENCE} drop constraint %I', key);
            for unique_index in select indexrelid::regclass::text from pg_index
                                 where indrelid = '{AUDIENCE}'::regclass and indisunique
            loop
                execute 'drop index ' || unique_index;
            end loop;
        end $$;
        insert into {AUDIENCE} select * from {AUDIENCE} where contact_id <= 'C00020'
    """)
    failures = run_guarded(tmp_path)
    assert "expect_column_values_to_be_unique" in failed_expectations(failures)


def test_a_tenfold_audience_stops_the_send(tampered, tmp_path, baseline):
    execute(f"insert into {AUDIENCE} select 'X' || copy || '-' || contact_id, enrollment_id"
            f" || '-' || copy, entry_source, enrolled_at, email, phone, first_name, time_zone,"
            f" locale, has_email_consent, has_sms_consent, is_activated, activated_at,"
            f" source_loaded_at from {AUDIENCE}, generate_series(1, 9) as copy")
    failures = run_guarded(tmp_path)
    assert failed_expectations(failures) == {"expect_table_row_count_to_be_between"}
    assert f"observed {baseline * 10}" in failures[0]


def test_stale_source_data_stops_the_send(tampered, tmp_path):
    execute(f"update {AUDIENCE} set source_loaded_at = source_loaded_at - interval '3 days'")
    failures = run_guarded(tmp_path)
    assert failed_expectations(failures) == {"expect_column_max_to_be_between"}
