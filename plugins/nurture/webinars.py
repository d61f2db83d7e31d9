"""Webinar seats: who is confirmed and who waits, allocated once and remembered.

A seat, once given, is kept: a confirmation already sent is never taken back, so seats are
state in `nurture.webinar_seats`, not something dbt re-derives each run. The webinar
program's plan task calls `allocate_seats` before reading its audience, in one
transaction under a lock, so overlapping runs and retried tasks allocate each seat once:

    1. release the seats and places of cancelled registrations;
    2. promote the waitlist, oldest registration first, into free seats;
    3. seat new registrations while seats are free, and waitlist the rest.

The promotion and confirmation messages hang off `promoted_at` / `seated_at`, and the
ledger sends each once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

DDL = """
create table if not exists nurture.webinar_seats (
    registration_id text primary key,
    webinar_id text not null,
    contact_id text not null,
    seat_status text not null check (seat_status in ('seated', 'waitlisted', 'released')),
    seated_at timestamptz,
    waitlisted_at timestamptz,
    promoted_at timestamptz,
    released_at timestamptz
);
create index if not exists webinar_seats_webinar on nurture.webinar_seats (webinar_id);
"""

# Registrations, newest state, of webinars not yet over (staging views are live).
_OPEN_REGISTRATIONS = """
    select registrations.registration_id, registrations.webinar_id, registrations.contact_id,
           registrations.registered_at, registrations.is_cancelled
    from staging.stg_app__webinar_registrations as registrations
    inner join staging.stg_app__webinars as webinars using (webinar_id)
    where webinars.ends_at > %(now)s and (%(webinar_id)s::text is null
                                          or webinars.webinar_id = %(webinar_id)s)
"""

_RELEASE = f"""
    update nurture.webinar_seats as seats
    set seat_status = 'released', released_at = %(now)s
    from ({_OPEN_REGISTRATIONS}) as registrations
    where seats.registration_id = registrations.registration_id
      and registrations.is_cancelled and seats.seat_status <> 'released'
"""

# Free seats per webinar, then the oldest waitlisted registrations that fill them.
_PROMOTE = f"""
    with open as ({_OPEN_REGISTRATIONS}),
    free as (
        select webinars.webinar_id, webinars.capacity - count(seats.registration_id)
            filter (where seats.seat_status = 'seated') as free_seats
        from staging.stg_app__webinars as webinars
        left join nurture.webinar_seats as seats using (webinar_id)
        where webinars.webinar_id in (select webinar_id from open)
        group by webinars.webinar_id, webinars.capacity
    ),
    queue as (
        select seats.registration_id, seats.webinar_id,
               row_number() over (partition by seats.webinar_id
                                  order by open.registered_at, seats.registration_id) as place
        from nurture.webinar_seats as seats
        inner join open using (registration_id)
        where seats.seat_status = 'waitlisted' and not open.is_cancelled
    )
    update nurture.webinar_seats as seats
    set seat_status = 'seated', seated_at = %(now)s, promoted_at = %(now)s
    from queue inner join free using (webinar_id)
    where seats.registration_id = queue.registration_id and queue.place <= free.free_seats
"""

_NEW_REGISTRATIONS = f"""
    select open.registration_id, open.webinar_id, open.contact_id, webinars.capacity
    from ({_OPEN_REGISTRATIONS}) as open
    inner join staging.stg_app__webinars as webinars using (webinar_id)
    left join nurture.webinar_seats as seats using (registration_id)
    where seats.registration_id is null and not open.is_cancelled
    order by open.webinar_id, open.registered_at, open.registration_id
"""

_SEATED = """
    select webinar_id, count(*) from nurture.webinar_seats
    where seat_status = 'seated' group by webinar_id
"""


def allocate_seats(conn, *, now: datetime, filters: Mapping[str, Any] | None = None
                   ) -> dict[str, int]:
    """Release, promote, seat: see the module doc. Returns how many of each happened.

    Runs in the caller's transaction (the plan's, rolled back in a dry run); the lock is
    held until it ends."""
    params = {"now": now, "webinar_id": (filters or {}).get("webinar_id")}
    with conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(hashtext('nurture:webinar_seats'))")
        cur.execute(_RELEASE, params)
        released = cur.rowcount
        cur.execute(_PROMOTE, params)
        promoted = cur.rowcount
        cur.execute(_SEATED)
        seated = dict(cur.fetchall())
        cur.execute(_NEW_REGISTRATIONS, params)
        new_rows = []
        for registration_id, webinar_id, contact_id, capacity in cur.fetchall():
            has_seat = seated.get(webinar_id, 0) < capacity
            seated[webinar_id] = seated.get(webinar_id, 0) + has_seat
            new_rows.append((registration_id, webinar_id, contact_id,
                             "seated" if has_seat else "waitlisted",
                             now if has_seat else None, None if has_seat else now))
        if new_rows:
            from psycopg2.extras import execute_values

            execute_values(cur, "insert into nurture.webinar_seats (registration_id,"
                           " webinar_id, contact_id, seat_status, seated_at, waitlisted_at)"
                           " values %s on conflict (registration_id) do nothing", new_rows,
                           page_size=1000)
            # The plan reads the audience next, in this transaction: a query planner that
            # still takes the table for empty joins it by nested loops, for minutes at scale.
            cur.execute("analyze nurture.webinar_seats")
    counts = {"released": released, "promoted": promoted,
              "seated": sum(row[3] == "seated" for row in new_rows),
              "waitlisted": sum(row[3] == "waitlisted" for row in new_rows)}
    log.info("webinar seats: %s", counts)
    return counts
