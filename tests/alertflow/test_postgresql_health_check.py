"""The PostgreSQL health check asks the socket first (alertflow/postgresql/base.py): a warm,
quiet connection passes with no `SELECT 1`; one the server closed, or spoke to, gets the real check
and is replaced before the request's first query."""

import select
import time

import psycopg
import pytest
from django.db import close_old_connections, connection

pytestmark = pytest.mark.django_db(transaction=True)  # real connections, in autocommit


@pytest.fixture
def other_session():
    """A second connection to the test database, as another process (or an operator) would hold."""
    params = connection.get_connection_params()
    params.pop("context", None)
    params.pop("cursor_factory", None)
    other = psycopg.connect(**params, autocommit=True)
    yield other
    other.close()


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def last_statement_of(other, pid: int) -> str:
    """What the session `pid` ran last, as the server saw it (psycopg's own cursors included:
    Django's `is_usable` runs its `SELECT 1` on one, past every Django wrapper)."""
    return other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]


def start_of_a_request() -> None:
    """What Django's request_started signal does (and the test client leaves out)."""
    close_old_connections()


def terminate(other, pid: int) -> None:
    other.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
        assert time.monotonic() < deadline, f"backend {pid} still there"
        time.sleep(0.02)


def test_a_warm_connection_passes_the_check_with_no_round_trip(other_session):
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the request before'")

    start_of_a_request()
    connection.close_if_health_check_failed()  # what the request's first query does first

    assert connection.health_check_done
    assert last_statement_of(other_session, pid) == "SELECT 'the request before'"


def test_a_terminated_backend_is_replaced_before_the_next_requests_first_query(other_session, owner):
    pid = backend_pid()
    terminate(other_session, pid)

    start_of_a_request()
    response = owner.get("/api/v1/notifications")

    assert response.status_code == 200, response.content
    assert backend_pid() != pid


def test_a_connection_the_server_spoke_to_gets_the_real_check_and_stays(other_session):
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("LISTEN review_health_check")
    other_session.execute("NOTIFY review_health_check")
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    assert poller.poll(5000), "the notification did not arrive"

    start_of_a_request()
    connection.close_if_health_check_failed()

    assert last_statement_of(other_session, pid) == "SELECT 1"
    assert connection.connection is not None and backend_pid() == pid
    # The check read the notification: the next request's check is quiet again.
    start_of_a_request()
    connection.close_if_health_check_failed()
    assert last_statement_of(other_session, pid) == "SELECT pg_backend_pid()"


def test_after_a_failed_query_the_check_still_runs_select_1(other_session):
    """`errors_occurred` (a query failed since the last commit) is Django's `is_usable`, untouched."""
    from django.db import DatabaseError

    pid = backend_pid()
    with pytest.raises(DatabaseError), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert connection.errors_occurred

    start_of_a_request()

    assert last_statement_of(other_session, pid) == "SELECT 1"
    assert not connection.errors_occurred and backend_pid() == pid
