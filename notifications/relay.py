"""The outbox relay's loop (`manage.py relay`): publish committed outbox rows as they come.

On PostgreSQL the relay LISTENs on the channel the outbox's INSERT trigger notifies at commit,
so a row is published within milliseconds of its transaction's commit, and polls only as a
safety net (a notification missed while the listening connection was being replaced). On
SQLite (`make run` without DATABASE_URL), which has no LISTEN/NOTIFY, it polls.

It publishes whatever has committed when it wakes, at once: a lone single send goes out alone;
the singles that commit while it is publishing wait for its next round and go out together
(notifications/queue.py, SINGLES_PER_TASK). When the broker or the database is down the rows
stay where they are and the relay retries, backing off up to RETRY_MAX_SECONDS.
"""

import logging
import time
from collections.abc import Callable

from django.db import close_old_connections, connection

from . import queue

logger = logging.getLogger(__name__)

# SQLite's poll; on PostgreSQL the longest the relay sleeps without a notification (safety net).
POLL_SECONDS = {"sqlite": 0.2}
LISTEN_POLL_SECONDS = 1.0
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0


class Listener:
    """A connection of its own that LISTENs on the outbox channel (Django's connection runs the
    relay's transactions). `wait` returns on a notification or after `timeout` seconds."""

    def __init__(self):
        self.connection = None

    def wait(self, timeout: float) -> None:
        import psycopg

        try:
            if self.connection is None or self.connection.closed:
                self.connection = self._connect(psycopg)
                return  # rows committed before the LISTEN sent no notification we can see: look now
            for _ in self.connection.notifies(timeout=timeout, stop_after=1):
                break
            # Notifications that came together wake the relay once.
            for _ in self.connection.notifies(timeout=0):
                pass
        except psycopg.Error as exc:
            logger.warning("Relay: listening connection lost (%s); reconnecting", exc)
            self.close()
            time.sleep(RETRY_FIRST_SECONDS)

    def _connect(self, psycopg):
        params = connection.get_connection_params()
        params.pop("context", None)  # Django's adapters: not needed to LISTEN
        params.pop("cursor_factory", None)
        listening = psycopg.connect(**params, autocommit=True)
        listening.execute(f"LISTEN {queue.OUTBOX_CHANNEL}")
        return listening

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class Poller:
    """Where there is no LISTEN/NOTIFY: sleep, then look."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, self.seconds))

    def close(self) -> None:
        pass


def waiter() -> Listener | Poller:
    if connection.vendor == "postgresql":
        return Listener()
    return Poller(POLL_SECONDS.get(connection.vendor, 0.2))


def serve(stopping: Callable[[], bool]) -> None:
    """Relay until `stopping()` is true (checked at least every LISTEN_POLL_SECONDS)."""
    wake = waiter()
    retry_in = RETRY_FIRST_SECONDS
    try:
        while not stopping():
            try:
                relayed = queue.relay_once()
            except Exception as exc:  # the broker or the database is down: the rows wait
                logger.warning("Relay: could not publish, retrying in %.1f s: %s", retry_in, exc)
                close_old_connections()
                connection.close()  # a broken connection is not reused
                time.sleep(retry_in)
                retry_in = min(retry_in * 2, RETRY_MAX_SECONDS)
                continue
            retry_in = RETRY_FIRST_SECONDS
            if relayed < queue.RELAY_ROWS:  # the outbox is empty: wait for the next commit
                wake.wait(LISTEN_POLL_SECONDS)
    finally:
        wake.close()
