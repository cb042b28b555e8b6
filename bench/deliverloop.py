"""The worker's delivery of single sends in-process: `delivery.pipeline.deliver` called in a loop
(no Celery, no broker, no relay), each call with `--size` message ids (1: a single send's task;
up to 20: the relay's merged singles), to an SMTP sink in its own process. The messages are
accepted first through Django's WSGI handler, as the API writes them. Prints, per email, this
process's CPU, its PostgreSQL backend's CPU, the SQL statements and the Redis round trips.
bench.acceptloop's sibling for the worker: run the two sides of a change alternately.
`--trace` prints the Redis commands and SQL of one warm call instead.

    .venv/bin/python -m bench.deliverloop [--emails 2000] [--warmup 300] [--size 1] [--trace]
                                          [--accepted N]

`--accepted` sends are accepted before the clock starts (at least `--warmup` + `--emails`, the
default), and only the first `--warmup` + `--emails` delivered: bench.instructions runs two
lengths with the same accepted count, so their difference holds the deliveries alone.
"""

import argparse
import random
import time

from .client import FROM_EMAIL, email_send
from .cpu import tree_cpu_seconds
from .inprocess import Counts, fresh_tenant, wal_bytes
from .smtp import SmtpSink


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--size", type=int, default=1, help="message ids per deliver() call (a task)")
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--trace", action="store_true", help="print the Redis commands and SQL of one call")
    parser.add_argument("--accepted", type=int, default=0, help="sends accepted first (default: warmup + emails)")
    args = parser.parse_args()
    call, _tenant_id, key, recipients = fresh_tenant("deliverloop", args.recipients)
    from django.db import connection

    from delivery import pipeline
    from notifications.models import Message

    rng = random.Random(1)
    with SmtpSink() as sink:
        config = {"host": "127.0.0.1", "port": sink.port, "from_email": FROM_EMAIL, "timeout": 10}
        provider = {"channel": "email", "kind": "smtp", "name": "sink", "config": config}
        status, out = call("POST", "/api/v1/providers", provider, key)
        assert status.startswith("201"), (status, out)
        total = args.warmup + (args.size if args.trace else args.emails)
        for _ in range(max(total, args.accepted)):
            status, out = call("POST", "/api/v1/notifications", email_send(recipient=rng.choice(recipients)), key)
            assert status.startswith("202"), (status, out)
        ids = [str(pk) for pk in Message.objects.order_by("created", "pk").values_list("pk", flat=True)][:total]
        calls = [ids[i : i + args.size] for i in range(0, len(ids), args.size)]
        warm, measured = calls[: args.warmup // args.size], calls[args.warmup // args.size :]
        for chunk in warm:
            pipeline.deliver(chunk)
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        counts = Counts(trace=args.trace)
        if args.trace:
            with connection.execute_wrapper(counts.sql_wrapper):
                pipeline.deliver(measured[0])
            for kind, text in counts.trace:
                print(kind, text)
            return
        n = sum(len(chunk) for chunk in measured)
        wal0, cpu0, pg0, wall0 = wal_bytes(), time.process_time(), tree_cpu_seconds(backend), time.perf_counter()
        with connection.execute_wrapper(counts.sql_wrapper):
            sent = sum(pipeline.deliver(chunk) for chunk in measured)
        cpu1, pg1, wall1 = time.process_time(), tree_cpu_seconds(backend), time.perf_counter()
        wal1 = wal_bytes()
        assert sent == n, f"{sent} of {n} sent"
        assert sink.wait_count(len(ids), 30), f"{sink.count()} of {len(ids)} arrived"
    print(
        f"emails {n} in calls of {args.size}: python {1000 * (cpu1 - cpu0) / n:.3f} ms, "
        f"postgres {1000 * (pg1 - pg0) / n:.3f} ms, wall {1000 * (wall1 - wall0) / n:.3f} ms, "
        f"sql {counts.sql / n:.2f}, redis round trips {counts.redis / n:.2f}, WAL {(wal1 - wal0) / n:,.0f} bytes per email"
    )


if __name__ == "__main__":
    main()
