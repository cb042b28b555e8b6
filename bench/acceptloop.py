"""The accept path in-process: Django's WSGI handler called in a loop (no gunicorn, no network,
no load generator), single email sends to recipients picked at random. Prints, per send, this
process's CPU, its PostgreSQL backend's CPU, the SQL statements and the Redis round trips (each
command or pipeline sent, counted at redis-py's `send_packed_command`). Far less noise than
bench.accept on a shared box: run the two sides of a change one after the other, alternately.
`--trace` prints the Redis commands and SQL of one warm send instead.

    .venv/bin/python -m bench.acceptloop [--requests 2000] [--warmup 300] [--recipients 3000] [--trace]
                                         [--py-spy FILE] [--relay-busy]

No relay runs here, so each send wakes it (a NOTIFY in a transaction of its own) as it would
on a quiet system; `--relay-busy` sets the key a busy relay keeps alive (notifications/queue.py,
RelayPolling), so the sends skip the wake-up as they do under load.

3,000 recipients in one process miss the per-process recipient cache about as often as
bench.accept's 1,000 over 3 gunicorn processes do.
"""

import argparse
import os
import random
import time
from pathlib import Path

from .client import email_send
from .cpu import PySpy, tree_cpu_seconds
from .inprocess import Counts, fresh_tenant, wal_bytes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--recipients", type=int, default=3000)
    parser.add_argument("--trace", action="store_true", help="print the Redis commands and SQL of one request")
    parser.add_argument("--py-spy", metavar="FILE", help="record the measured sends with py-spy (collapsed stacks)")
    parser.add_argument("--relay-busy", action="store_true", help="the sends find the relay polling: no wake-up")
    args = parser.parse_args()
    call, _tenant_id, key, ids = fresh_tenant("acceptloop", args.recipients)
    from django.db import connection

    if args.relay_busy:
        from alertflow.redis import client
        from notifications.queue import RELAY_POLLING_KEY

        client().set(RELAY_POLLING_KEY, "1", px=3_600_000)  # the bench's own Redis database

    rng = random.Random(1)

    counts = Counts(trace=args.trace)
    for _ in range(args.warmup):
        s, o = call("POST", "/api/v1/notifications", email_send(recipient=rng.choice(ids)), key)
        assert s.startswith("202"), (s, o)
    connection.ensure_connection()
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        backend = c.fetchone()[0]
    if args.trace:
        counts.clear()
        with connection.execute_wrapper(counts.sql_wrapper):
            call("POST", "/api/v1/notifications", email_send(recipient=rng.choice(ids)), key)
        for kind, text in counts.trace:
            print(kind, text)
        return
    counts.clear()
    # py-spy attaches before the clocks start and detaches after they stop.
    with PySpy(os.getpid(), Path(args.py_spy) if args.py_spy else None):
        wal0, cpu0, pg0, wall0 = wal_bytes(), time.process_time(), tree_cpu_seconds(backend), time.perf_counter()
        with connection.execute_wrapper(counts.sql_wrapper):
            for _ in range(args.requests):
                s, o = call("POST", "/api/v1/notifications", email_send(recipient=rng.choice(ids)), key)
                assert s.startswith("202"), (s, o)
        cpu1, pg1, wall1 = time.process_time(), tree_cpu_seconds(backend), time.perf_counter()
        wal1 = wal_bytes()
    n = args.requests
    print(
        f"requests {n}: python {1000 * (cpu1 - cpu0) / n:.3f} ms, postgres {1000 * (pg1 - pg0) / n:.3f} ms, "
        f"wall {1000 * (wall1 - wall0) / n:.3f} ms, sql {counts.sql / n:.2f}, redis round trips {counts.redis / n:.2f}, "
        f"WAL {(wal1 - wal0) / n:,.0f} bytes"
    )


if __name__ == "__main__":
    main()
