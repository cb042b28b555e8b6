"""PostgreSQL connections bind parameters on the server and prepare the statements they repeat
(config/settings.py, `DB_PREPARED_STATEMENTS`), and a new one the server never answers fails
after `DB_CONNECT_TIMEOUT` seconds instead of waiting for ever (libpq's default: a database
address that drops packets would hang a request, a worker's task or the relay for good); SQLite
is left as it was."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.db import OperationalError, connection

from alertflow.postgresql.base import DatabaseWrapper
from tenants.models import Tenant

PRINT_OPTIONS = (
    "from django.conf import settings; print(__import__('json').dumps(settings.DATABASES['default']['OPTIONS']))"
)


def options_in_a_fresh_process(**env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {PRINT_OPTIONS}"],
        cwd=settings.BASE_DIR,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("DB_PREPARED_STATEMENTS", "DB_CONNECT_TIMEOUT")},
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "true",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_a_query_repeated_on_a_connection_is_prepared_by_postgresql():
    tenant = Tenant.objects.create(name="prepared")
    # A query of its own (the name prefix bound as $1, a limit of 3), so what is found
    # prepared below was prepared here.
    for _ in range(6):
        query = Tenant.objects.filter(pk=tenant.pk, name__startswith="prep").values_list("name", flat=True)[:3]
        assert list(query) == ["prepared"]

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any(
        Tenant._meta.db_table in statement and "LIKE $1" in statement and "LIMIT 3" in statement
        for statement in prepared
    ), [s for s in prepared if Tenant._meta.db_table in s]


def test_postgresql_gets_server_side_binding_and_prepared_statements_by_default():
    options = options_in_a_fresh_process(DATABASE_URL="postgres://postgres@127.0.0.1:5432/alertflow")

    assert options == {"connect_timeout": 5, "server_side_binding": True, "prepare_threshold": 5}


def test_db_prepared_statements_0_keeps_djangos_client_side_binding():
    options = options_in_a_fresh_process(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/alertflow", DB_PREPARED_STATEMENTS="0"
    )

    assert options == {"connect_timeout": 5}


def test_db_connect_timeout_sets_libpqs_and_the_urls_own_wins():
    url = "postgres://postgres@127.0.0.1:5432/alertflow"

    assert options_in_a_fresh_process(DATABASE_URL=url, DB_CONNECT_TIMEOUT="12")["connect_timeout"] == 12
    assert options_in_a_fresh_process(DATABASE_URL=f"{url}?connect_timeout=3")["connect_timeout"] == 3


@pytest.fixture
def silent_server():
    """A port whose listener takes connections (the kernel completes them from its backlog) and
    never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.django_db
def test_a_connect_the_server_never_answers_fails_after_the_timeout(silent_server):
    timeout = settings.DATABASES["default"]["OPTIONS"].get("connect_timeout", 5)
    silent = DatabaseWrapper({**connection.settings_dict, "HOST": "127.0.0.1", "PORT": silent_server})
    outcome = {}

    def connect():
        started = time.monotonic()
        try:
            silent.ensure_connection()
        except OperationalError as exc:
            outcome["error"] = exc
        finally:
            outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 10)

    assert not thread.is_alive(), "the connect is still waiting for the server"
    assert "error" in outcome
    assert timeout - 1 <= outcome["seconds"] <= timeout + 5


def test_sqlite_options_are_left_alone(tmp_path):
    options = options_in_a_fresh_process(DATABASE_URL=f"sqlite:///{tmp_path / 'a.sqlite3'}")

    assert "server_side_binding" not in options and "prepare_threshold" not in options


@pytest.fixture
def scratch_table():
    """A table of this test's own, and a second connection to change it as a migration run by
    another process (`manage.py migrate` while web and the workers still run) would."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("context", None)
    params.pop("cursor_factory", None)
    other = psycopg.connect(**params, autocommit=True)
    other.execute("CREATE TABLE review_prepared (id int PRIMARY KEY, name varchar(10))")
    other.execute("INSERT INTO review_prepared VALUES (1, 'ada')")
    yield other
    other.execute("DROP TABLE review_prepared")
    other.close()


@pytest.mark.django_db(transaction=True)
def test_a_prepared_query_still_answers_after_another_process_changed_its_column_type(scratch_table):
    """A prepared statement whose result type a migration changed (varchar(10) -> varchar(20))
    fails with "cached plan must not change result type", and outside a transaction nothing
    rolls back to make psycopg forget it: every later run on that connection failed, for as long
    as the connection lived (DB_CONN_MAX_AGE, or the relay's whole life)."""
    query = "SELECT id, name FROM review_prepared WHERE id = %s"
    with connection.cursor() as cursor:
        for _ in range(6):
            cursor.execute(query, [1])
            assert cursor.fetchall() == [(1, "ada")]

    scratch_table.execute("ALTER TABLE review_prepared ALTER COLUMN name TYPE varchar(20)")

    for _ in range(2):
        with connection.cursor() as cursor:
            cursor.execute(query, [1])
            assert cursor.fetchall() == [(1, "ada")]


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_changed_plan_fails_once_and_the_rollback_clears_it(scratch_table):
    from django.db import NotSupportedError, transaction

    query = "SELECT id, name FROM review_prepared WHERE id = %s"
    with connection.cursor() as cursor:
        for _ in range(6):
            cursor.execute(query, [1])
    scratch_table.execute("ALTER TABLE review_prepared ALTER COLUMN name TYPE varchar(20)")

    # The transaction's earlier work cannot be kept by running the statement again: it fails...
    with (
        pytest.raises(NotSupportedError, match="cached plan must not change result type"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(query, [1])
    # ...and its rollback made psycopg forget its prepared statements.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(query, [1])
        assert cursor.fetchall() == [(1, "ada")]
