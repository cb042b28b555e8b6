"""The accept path in-process: Django's WSGI handler called in a loop (no gunicorn, no network,
no load generator), single email sends to recipients picked at random. Prints, per send, this
process's CPU, its PostgreSQL backend's CPU, the SQL statements and the Redis round trips (each
command or pipeline sent, counted at redis-py's `send_packed_command`). Far less noise than
bench.accept on a shared box: run the two sides of a change one after the other, alternately.
`--trace` prints the Redis commands and SQL of one warm send instead.

    .venv/bin/python -m bench.acceptloop [--requests 2000] [--warmup 300] [--recipients 3000] [--trace]

3,000 recipients in one process miss the per-process recipient cache about as often as
bench.accept's 1,000 over 3 gunicorn processes do.
"""

import argparse
import collections
import io
import json
import random
import time

from .client import create_recipients, email_send
from .cpu import tree_cpu_seconds
from .env import flush_redis, prepare_database, setup_django


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--recipients", type=int, default=3000)
    parser.add_argument("--trace", action="store_true", help="print the Redis commands and SQL of one request")
    args = parser.parse_args()
    prepare_database()
    flush_redis()
    setup_django()
    import redis.connection
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    app = WSGIHandler()

    def call(method, path, body, key=None):
        data = json.dumps(body).encode()
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(data),
            "CONTENT_LENGTH": str(len(data)),
            "CONTENT_TYPE": "application/json",
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if key:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        status = []
        result = app(environ, lambda s, h, *a: status.append(s))
        out = b"".join(result)
        result.close()  # as a WSGI server does: request_finished
        return status[0], out

    status, out = call("POST", "/api/v1/register", {"service_name": "acceptloop", "notification_types": ["bench"]})
    assert status.startswith("201"), (status, out)
    body = json.loads(out)
    tenant_id, key = body["client_id"], body["api_token"]
    ids = create_recipients(tenant_id, args.recipients)
    rng = random.Random(1)

    redis_calls = collections.Counter()
    original = redis.connection.AbstractConnection.send_packed_command
    trace = []

    def counting(self, command, check_health=True):
        redis_calls["rt"] += 1
        if args.trace:
            trace.append(("redis", bytes(command[0] if isinstance(command, list) else command)[:120]))
        return original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting
    sql = collections.Counter()

    def wrapper(execute, sql_text, params, many, context):
        sql["n"] += 1
        if args.trace:
            trace.append(("sql", sql_text[:160]))
        return execute(sql_text, params, many, context)

    for _ in range(args.warmup):
        s, o = call("POST", "/api/v1/notifications", email_send(recipient=rng.choice(ids)), key)
        assert s.startswith("202"), (s, o)
    connection.ensure_connection()
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        backend = c.fetchone()[0]
    if args.trace:
        trace.clear()
        with connection.execute_wrapper(wrapper):
            call("POST", "/api/v1/notifications", email_send(recipient=rng.choice(ids)), key)
        for kind, text in trace:
            print(kind, text)
        return
    redis_calls.clear()
    sql.clear()
    cpu0, pg0, wall0 = time.process_time(), tree_cpu_seconds(backend), time.perf_counter()
    with connection.execute_wrapper(wrapper):
        for _ in range(args.requests):
            s, o = call("POST", "/api/v1/notifications", email_send(recipient=rng.choice(ids)), key)
            assert s.startswith("202"), (s, o)
    cpu1, pg1, wall1 = time.process_time(), tree_cpu_seconds(backend), time.perf_counter()
    n = args.requests
    print(
        f"requests {n}: python {1000 * (cpu1 - cpu0) / n:.3f} ms, postgres {1000 * (pg1 - pg0) / n:.3f} ms, "
        f"wall {1000 * (wall1 - wall0) / n:.3f} ms, sql {sql['n'] / n:.2f}, redis round trips {redis_calls['rt'] / n:.2f}"
    )


if __name__ == "__main__":
    main()
