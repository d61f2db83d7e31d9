"""`dbt build` of the whole project (models, contracts, data tests) on the embedded
PostgreSQL, loaded with the demo dataset."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nurture import seed, warehouse


@pytest.fixture(scope="module")
def built(warehouse_url):
    data = seed.build()
    with warehouse.connect() as conn:
        seed.load(conn, data)
    result = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "build", "--quiet"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return data


def scalar(sql: str):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def test_contacts_has_one_row_per_crm_contact(built):
    distinct_contacts = len({row[0] for row in built.tables["crm_contacts"]})
    assert scalar("select count(*) from marts.contacts") == distinct_contacts
    assert distinct_contacts < len(built.tables["crm_contacts"])  # the demo has duplicates


def test_onboarding_audience_holds_every_enrolled_contact(built):
    enrolled = sum(1 for scenario in built.scenario_of.values())
    assert scalar("select count(*) from marts.onboarding_audience") == enrolled


def test_consent_follows_the_newest_change(built):
    opted_out = {cid for cid, s in built.scenario_of.items() if not s.email_consent}
    rows = scalar("select array_agg(contact_id) from marts.contacts where not has_email_consent")
    assert set(rows) == opted_out


def test_contracts_are_enforced_on_what_dags_and_bi_read(built):
    """The contracted marts carry their declared constraints in the database."""
    keys = scalar(
        "select array_agg(conrelid::regclass::text order by 1) from pg_constraint"
        " where contype = 'p' and connamespace = 'marts'::regnamespace"
    )
    assert set(keys) >= {"marts.contacts", "marts.onboarding_audience", "marts.message_sends"}


def test_the_build_indexes_raw_tables_where_incremental_reads_need_it(built):
    """Declared on the sources (config.meta.indexes), made by the build's on-run-start: a
    raw table loaded bare (the seed creates it without any) gets them."""
    indexes = scalar("select array_agg(indexrelid::regclass::text) from pg_index"
                     " where indrelid in ('raw.events'::regclass, 'raw.consents'::regclass)")
    assert set(indexes) == {"raw.events_event_id_idx", "raw.events__loaded_at_idx",
                            "raw.events_contact_id_idx", "raw.consents_consent_id_idx",
                            "raw.consents__loaded_at_idx", "raw.consents_contact_id_idx"}


def test_an_index_may_be_on_an_expression(built):
    """SendGrid's events are indexed by lower(event): the consent models read the few
    withdrawals through it instead of every event's payload."""
    assert scalar("select indexdef from pg_indexes where schemaname = 'raw'"
                  " and indexname = 'sendgrid_events_lower_event_idx'") == (
        "CREATE INDEX sendgrid_events_lower_event_idx ON raw.sendgrid_events"
        " USING btree (lower(event))")


def test_a_role_that_cannot_index_a_raw_table_builds_with_a_warning(built, warehouse_url):
    """Where the loader owns the raw tables, dbt's role may only read them: the index is
    skipped with a warning, and on-run-start does not fail the build."""
    import psycopg2

    compiled = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "compile", "--quiet", "--inline",
         "{{ create_source_indexes() }}"], capture_output=True, text=True, check=True).stdout
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("drop index raw.events_event_id_idx")
        cur.execute("drop role if exists reader; create role reader login password 'reader';"
                    " grant usage on schema raw to reader")
    reader = psycopg2.connect(warehouse_url.replace("postgres:nurture@", "reader:reader@"))
    try:
        with reader, reader.cursor() as cur:
            cur.execute(compiled)
        warnings = [n for n in reader.notices if "events_event_id_idx" in n]
    finally:
        reader.close()
        with warehouse.connect() as conn, conn.cursor() as cur:
            cur.execute(compiled)  # as the owner: the index is back for the other tests
            cur.execute("drop owned by reader; drop role reader")
    assert warnings and "only the owner of raw.events can create it" in warnings[0]
    assert scalar("select to_regclass('raw.events_event_id_idx')::text") == (
        "raw.events_event_id_idx")


def test_events_from_other_senders_on_the_account_do_not_break_the_build(built):
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("insert into raw.sendgrid_events (sg_event_id, event, payload) values"
                    " ('foreign-1', 'delivered', '{\"ledger_id\": \"L-1\", \"timestamp\": 1}')"
                    " on conflict do nothing")
    result = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "dbt", "build", "--quiet", "-s",
         "stg_sendgrid__events+"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert scalar("select count(*) from staging.stg_sendgrid__events"
                  " where sg_event_id = 'foreign-1' and ledger_id is null") == 1
