"""A sender's rate held across send tasks: slots reserved in the warehouse.

`SendRateLimiter` keeps the threads of one send task to a sender's messages per second, but
two SMS tasks of one sender at once (another batch, another program, another Celery worker)
would each send at the full rate. Here every request first reserves the sender's next free
slot in one row of `nurture.send_rate_slots` (one short statement, the row lock serialising
them), then waits for it: the slots of all tasks together are an interval apart.
"""

from __future__ import annotations

import threading
import time

from nurture.providers.pushback import RATE_HEADROOM

# Made with the ledger (`ledger.ensure_schema`), before any send task runs.
DDL = """
create table if not exists nurture.send_rate_slots (
    sender text primary key,
    next_slot timestamptz not null
)
"""

# Take the next free slot (now, after an idle spell: no burst to catch up): the slot, in
# epoch seconds on the warehouse's clock, and the seconds to wait for it.
_RESERVE = """
insert into nurture.send_rate_slots as slots (sender, next_slot)
values (%(sender)s, clock_timestamp() + make_interval(secs => %(interval)s))
on conflict (sender) do update
    set next_slot = greatest(slots.next_slot, clock_timestamp())
                    + make_interval(secs => %(interval)s)
returning extract(epoch from slots.next_slot) - %(interval)s,
          extract(epoch from slots.next_slot - clock_timestamp()) - %(interval)s
"""


class SharedRateLimiter:
    """At most `per_second` requests a second for `sender`, from every process using this
    warehouse; `acquire()` as `SendRateLimiter.acquire()`."""

    def __init__(self, warehouse_url: str, sender: str, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("a send rate must be positive")
        self.warehouse_url, self.sender = warehouse_url, sender
        self.interval = 1.0 / (per_second * RATE_HEADROOM)
        self._lock = threading.Lock()  # one connection for the task's threads: ~1 ms a slot
        self._conn = None

    def acquire(self) -> None:
        """Block until this request's slot."""
        with self._lock:
            _, delay = self._reserve()
        if delay > 0:
            time.sleep(delay)

    def _reserve(self) -> tuple[float, float]:
        """Reserve the sender's next slot: (its time on the warehouse's clock, seconds to
        wait for it)."""
        import psycopg2

        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.warehouse_url)
            self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute(_RESERVE, {"sender": self.sender, "interval": self.interval})
            slot, delay = cur.fetchone()
            return float(slot), float(delay)
