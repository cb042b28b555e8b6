"""What the in-process benchmarks (bench.acceptloop, bench.deliverloop) share: requests through
Django's WSGI handler without a server, and the SQL statements and Redis round trips counted."""

import io
import json

from .client import create_recipients
from .env import bench_env, flush_redis_and_metrics, prepare_database, setup_django


def wal_bytes() -> int:
    """PostgreSQL's WAL position in bytes: the difference of two is what the server wrote to its
    log between them (the whole server's, so nothing else should write meanwhile). Every byte is
    replicated, archived and replayed: a cost the CPU of one backend does not show."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
        return cursor.fetchone()[0]


def wsgi_caller():
    """`call(method, path, body, key=None) -> (status, body bytes)`: one request through
    Django's WSGI handler, closed as a WSGI server closes it (request_finished)."""
    from django.core.handlers.wsgi import WSGIHandler

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

    return call


class Counts:
    """The SQL statements (through `connection.execute_wrapper(counts.sql_wrapper)`) and Redis
    round trips (each command or pipeline sent, at redis-py's `send_packed_command`) from its
    creation on; with `trace`, the commands and statements too."""

    def __init__(self, trace: bool = False) -> None:
        import redis.connection

        self.tracing, self.trace, self.sql, self.redis = trace, [], 0, 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counting(conn, command, check_health=True):
            self.redis += 1
            if self.tracing:
                self.trace.append(("redis", bytes(command[0] if isinstance(command, list) else command)[:120]))
            return original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counting

    def sql_wrapper(self, execute, sql_text, params, many, context):
        self.sql += 1
        if self.tracing:
            self.trace.append(("sql", sql_text[:160]))
        return execute(sql_text, params, many, context)

    def clear(self) -> None:
        self.trace, self.sql, self.redis = [], 0, 0


def fresh_tenant(name: str, recipients: int):
    """A fresh bench database and Redis, Django set up in this process, and a tenant registered
    through the API with `recipients` recipients: `(call, tenant_id, api_key, recipient ids)`."""
    prepare_database()
    flush_redis_and_metrics()
    # One PostgreSQL backend for the whole run, so that its CPU is the run's: with the product's
    # 60 s a run longer than a minute replaced it, and the CPU of the one measured was lost.
    setup_django(bench_env(DB_CONN_MAX_AGE="3600"))
    call = wsgi_caller()
    status, out = call("POST", "/api/v1/register", {"service_name": name, "notification_types": ["bench"]})
    assert status.startswith("201"), (status, out)
    body = json.loads(out)
    tenant_id, key = body["client_id"], body["api_token"]
    return call, tenant_id, key, create_recipients(tenant_id, recipients)
