"""Two attempts of one send batch at the same time, as several Celery workers can make them: a
worker cut off from the API server keeps sending (a zombie) while Airflow's retry of the same
task instance runs on another worker. However their claims interleave, no row may be claimed
by both, so no message goes out twice.
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg2
import pytest
from test_ledger import planned

from nurture import ledger
from nurture.ledger import Outcome

PROGRAM = "ledger_test_two_attempts"  # the e2e tests look only at their programs' rows
ROWS = 200


@pytest.fixture
def batch(warehouse_url):
    """A connection and a run id; the run's rows go at the end."""
    conn = psycopg2.connect(warehouse_url)
    ledger.ensure_schema(conn)
    conn.commit()
    yield conn, f"two_attempts__{uuid.uuid4().hex}"
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("delete from nurture.message_ledger where program = %s", (PROGRAM,))
    conn.commit()
    conn.close()


def record(conn, run_id: str, contacts: list[str]) -> None:
    ledger.record(conn, [planned(c, program=PROGRAM) for c in contacts], dag_run_id=run_id)
    conn.commit()


def claim(conn, run_id: str, limit: int | None = None) -> list[dict]:
    return ledger.claim_batch(conn, program=PROGRAM, dag_run_id=run_id, channel="email",
                              batch_no=0, limit=limit)


def states(conn) -> dict[str, tuple[str, str | None]]:
    with conn.cursor() as cur:
        cur.execute("select contact_id, state, reason from nurture.message_ledger"
                    " where program = %s", (PROGRAM,))
        found = {contact: (state, reason) for contact, state, reason in cur}
    conn.commit()
    return found


def attempt(warehouse_url: str, run_id: str, start: threading.Barrier) -> list[dict]:
    """Claim and settle a few rows at a time until the batch has nothing planned, as
    dispatcher.dispatch_batch does; returns every row it claimed."""
    claimed = []
    conn = psycopg2.connect(warehouse_url)
    start.wait()
    while rows := claim(conn, run_id, limit=5):
        claimed += rows
        ledger.settle(conn, [Outcome(row["ledger_id"], "sent",
                                     provider_message_id=f"msg-{row['contact_id']}")
                             for row in rows])
        time.sleep(0.02)  # as a send takes time: the other attempt gets its turn
    conn.close()
    return claimed


def test_two_attempts_of_one_batch_never_claim_the_same_row(batch, warehouse_url):
    conn, run_id = batch
    record(conn, run_id, [f"p{n:03d}" for n in range(ROWS)])
    start = threading.Barrier(2)
    results: list[list[dict]] = [[], []]

    def run(index: int) -> None:
        results[index] = attempt(warehouse_url, run_id, start)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    first, second = ({row["ledger_id"] for row in claimed} for claimed in results)
    assert first and second, "both attempts should have claimed rows"
    assert first.isdisjoint(second)
    assert len(first) + len(second) == ROWS
    assert {state for state, _ in states(conn).values()} <= {"sent", "unknown"}


def test_what_the_first_attempt_sent_stays_sent_when_a_second_starts(batch, warehouse_url):
    conn, run_id = batch
    record(conn, run_id, ["c1", "c2"])
    in_flight = claim(conn, run_id)
    retry = psycopg2.connect(warehouse_url)
    assert claim(retry, run_id) == []  # c1 and c2 may have gone out: not sent again
    retry.close()

    ledger.settle(conn, [Outcome(row["ledger_id"], "sent", provider_message_id="msg")
                         for row in in_flight])

    assert states(conn) == {"c1": ("sent", None), "c2": ("sent", None)}
