"""Django's PostgreSQL backend, with a health check that asks the socket before the server
(config/settings.py sets ENGINE "alertflow.postgresql" where the URL says PostgreSQL).

With `CONN_HEALTH_CHECKS`, Django sends `SELECT 1` before the first query of every request (and
of anything else that calls `close_old_connections`): a round trip and some backend CPU each time,
about 2.5% of gunicorn's samples under bench.accept. Between requests a persistent connection is
idle: nothing is sent, and nothing arrives unless the server spoke first. Everything that ends a
session from the server's side speaks: a restart or fast shutdown, `pg_terminate_backend` and
`idle_session_timeout` send a FATAL ErrorResponse and close the socket; a backend killed outright
has its socket closed by the kernel (EOF), a reset connection reports an error. So a socket with
nothing to read, polled with zero timeout, belongs to a session the server has not ended, and
`SELECT 1` would answer: the check ends there, with no round trip.

Anything readable (that FATAL, EOF, an error, or a harmless asynchronous message: a NOTIFY on a
connection that LISTENs, a ParameterStatus) and a connection psycopg already knows is closed or
broken go to Django's check as before: `SELECT 1`, and the connection is closed if it fails, so
the request's first query runs on a new one. What neither check can see is a server that vanished
without a word (host powered off, no FIN): `SELECT 1` hangs there just as the request's own first
query would.

Only `close_if_health_check_failed` changes. `is_usable` is Django's: the check after a request
whose queries failed (`errors_occurred` in `close_if_unusable_or_obsolete`) still runs `SELECT 1`.
"""

import select

from django.db.backends.postgresql import base


def server_may_have_spoken(conn) -> bool:
    """True if the psycopg connection `conn` is closed, or its socket has something to read now
    (without waiting): a message or EOF the connection has not taken in yet."""
    if conn.closed:  # psycopg's `broken` (interrupted, not closed by us) is a case of `closed`
        return True
    # poll, not select: select cannot watch a file descriptor above 1023.
    poller = select.poll()
    # fileno() is libpq's PQsocket, no system call; POLLERR and POLLHUP are reported anyway.
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        """Close the connection if it fails the health check (see the module docstring): a quiet
        socket passes with no round trip, anything else gets Django's `SELECT 1`."""
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not server_may_have_spoken(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
