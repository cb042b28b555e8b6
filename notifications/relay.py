"""The outbox relay's loop (`manage.py relay`): publish committed outbox rows as they come.

On PostgreSQL the relay LISTENs on the channel each writing transaction notifies right after
its commit (notifications/queue.py, WAKE_RELAY), so a row is published within milliseconds of
its transaction's commit; it polls only as a safety net (a notification missed while the
listening connection was being replaced). While the API is busy (a round took several rows),
the relay takes its next rounds without waiting to be woken, for a second after each such
round, and says so in Redis, so the writers skip their wake-up (queue.RelayPolling). On SQLite
(`make run` without DATABASE_URL), which has no LISTEN/NOTIFY, it polls.

It publishes whatever has committed when it wakes, at once, except single sends for a list in
which every worker already finds a task waiting (notifications/queue.py, QUEUE_AHEAD): those
wait in the outbox, and go out together as soon as the list is shorter, or once held
settings.ALERTFLOW_RELAY_HOLD_MAX_SECONDS. When the broker or the database is down, or the broker
does not answer (queue.BROKER_TIMEOUT_SECONDS), the rows stay where they are, unlocked, and the
relay retries, backing off up to RETRY_MAX_SECONDS; it never exits on a failure.
"""

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connection
from redis.exceptions import RedisError

from alertflow.redis import Backoff

from . import queue

logger = logging.getLogger(__name__)

# SQLite's poll; on PostgreSQL the longest the relay sleeps without a notification (safety net).
POLL_SECONDS = {"sqlite": 0.2}
LISTEN_POLL_SECONDS = 1.0
# While single sends are held back for a busy list (notifications/queue.py, QUEUE_AHEAD): how
# often the relay looks whether the list got shorter. A worker taking one of the tasks ahead
# leaves QUEUE_AHEAD - 1 for the others meanwhile.
HELD_POLL_SECONDS = 0.05
# At most 40 rounds a second. With singles held for busy lists, every commit's notification
# starts a round (two PostgreSQL queries and an LLEN pipeline) that mostly takes nothing: at 0.01
# (100 rounds/s) the relay cost 1.67-2.38 ms CPU per accepted send on a busy box, at 0.025
# 0.57-0.98 ms, accept -> arrival p99 no worse (bench/README, issue 14 session 3, the relay).
ROUND_SECONDS = 0.025
# ...and the more rows a round took, the longer until the next, up to
# settings.ALERTFLOW_RELAY_ROUND_MAX_SECONDS (0.1): the single sends that commit meanwhile go out
# as one task, and a worker's fixed cost per task (Celery's, the claim, the record's transaction:
# most of what a single send costs it) is shared by more of them. A round of one row (a quiet
# system) is followed by one at most ROUND_SECONDS later, and after a quiet spell the first commit
# goes out at once (bench/README, issue 14 session 5, the relay's rounds).
# A round that took this many rows or more says the API is busy: the relay keeps taking rounds
# without being woken for a while, and tells the writers so (queue.RelayPolling). One row a round
# is a quiet API, whose wake-ups cost nothing that matters.
POLLING_ROWS = 2
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
STOP_CHECK_SECONDS = 0.1


class Listener:
    """A connection of its own that LISTENs on the outbox channel (Django's connection runs the
    relay's transactions). `wait` returns on a notification (True) or after `timeout` seconds."""

    def __init__(self):
        self.connection = None

    def wait(self, timeout: float) -> bool:
        import psycopg

        try:
            if self.connection is None or self.connection.closed:
                self.connection = self._connect(psycopg)
                return True  # rows committed before the LISTEN sent no notification we can see: look now
            notified = False
            for _ in self.connection.notifies(timeout=timeout, stop_after=1):
                notified = True
            # Notifications that came together wake the relay once.
            for _ in self.connection.notifies(timeout=0):
                pass
            return notified
        except psycopg.Error as exc:
            logger.warning("Relay: listening connection lost (%s); reconnecting", exc)
            self.close()
            time.sleep(RETRY_FIRST_SECONDS)
            return True

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
        self.looked = time.monotonic()

    def wait(self, timeout: float) -> bool:
        """True once a poll interval passed since the last True: anything may have committed."""
        time.sleep(min(timeout, self.seconds))
        now = time.monotonic()
        if now - self.looked < self.seconds:
            return False
        self.looked = now
        return True

    def close(self) -> None:
        pass


def waiter() -> Listener | Poller:
    if connection.vendor == "postgresql":
        return Listener()
    return Poller(POLL_SECONDS.get(connection.vendor, 0.2))


def wait_for_room(wake: Listener | Poller, relayed: queue.Relayed, stopping: Callable[[], bool]) -> None:
    """While single sends wait in the outbox for a busy list: return as soon as a commit may have
    brought rows for another list, one of the busy lists got shorter (only the broker is asked,
    every HELD_POLL_SECONDS: no database round trip while nothing changes), the longest-held
    single reached its cap (`relayed.held_until`), and at the latest after LISTEN_POLL_SECONDS,
    the poll that finds rows whose notification was lost. Raises if the broker fails."""
    poll_at = time.monotonic() + min(LISTEN_POLL_SECONDS, max(0.0, relayed.held_until - time.time()))
    while not stopping():
        if wake.wait(max(0.0, min(HELD_POLL_SECONDS, poll_at - time.monotonic()))) or time.monotonic() >= poll_at:
            return
        if len(queue.busy_single_lists(relayed.held)) < len(relayed.held):
            return


def sleep_unless_stopping(seconds: float, stopping: Callable[[], bool]) -> None:
    """Sleep `seconds`, or less once `stopping()` is true (a back-off of RETRY_MAX_SECONDS must
    not hold up a stop: the command's SIGTERM, or a test ending its relay)."""
    until = time.monotonic() + seconds
    while not stopping() and (left := until - time.monotonic()) > 0:
        time.sleep(min(left, STOP_CHECK_SECONDS))


def round_gap(rows: int) -> float:
    """How long after a round that took `rows` outbox rows the next may start: ROUND_SECONDS a
    row, from ROUND_SECONDS to settings.ALERTFLOW_RELAY_ROUND_MAX_SECONDS. The rows of a round are the commits of the last
    gap: the busier the API, the more single sends each task carries. After a full round
    (RELAY_ROWS) more rows wait already, and waiting would not add to the next round's tasks:
    ROUND_SECONDS, so a backlog drains as fast as before."""
    if rows >= queue.RELAY_ROWS:
        return ROUND_SECONDS
    return min(max(ROUND_SECONDS, settings.ALERTFLOW_RELAY_ROUND_MAX_SECONDS), ROUND_SECONDS * max(1, rows))


ANNOUNCING = Backoff("The relay's polling announcement", instead="writers wake the relay through PostgreSQL")


def announce_polling(polling_until: float) -> float:
    """Tell writers that they need not wake the relay for the next
    queue.RELAY_POLLING_SECONDS, since it will look anyway; the new `polling_until`, or the old
    one if Redis could not be told (writers that cannot read the key wake the relay)."""
    if not ANNOUNCING.usable():
        return polling_until
    try:
        return queue.RelayPolling.announce()
    except RedisError:
        ANNOUNCING.failed("announcing that the relay polls")
        return polling_until


def serve(stopping: Callable[[], bool]) -> None:
    """Relay until `stopping()` is true (checked at least every LISTEN_POLL_SECONDS, and every
    STOP_CHECK_SECONDS of a back-off). It never exits on a failure: a broker or database that is down or does not
    answer (queue.BROKER_TIMEOUT_SECONDS) leaves the rows where they are, and it tries again,
    backing off from RETRY_FIRST_SECONDS to RETRY_MAX_SECONDS."""
    wake = waiter()
    retry_in = RETRY_FIRST_SECONDS
    try:
        last_round, gap = 0.0, ROUND_SECONDS
        polling_until = 0.0  # monotonic: until when writers were told they need not wake us
        while not stopping():
            # Rounds `gap` apart: under load, the commits of a few milliseconds go out in one
            # round instead of a round each (a round costs the relay about as much CPU for one
            # row as for many). After a quiet spell the first commit goes out at once.
            time.sleep(max(0.0, last_round + gap - time.monotonic()))
            last_round = time.monotonic()
            try:
                relayed = queue.relay_once()
                gap = round_gap(relayed.rows)
                retry_in = RETRY_FIRST_SECONDS
                if relayed.rows >= POLLING_ROWS and isinstance(wake, Listener):
                    polling_until = announce_polling(polling_until)
                if relayed.rows >= queue.RELAY_ROWS:
                    # A full round: more rows wait, and may be there since before the LISTEN (no
                    # notification will come for them). Held singles or not, take them at once.
                    continue
                if last_round < polling_until:
                    # Writers that commit meanwhile do not wake us (queue.RelayPolling): the next
                    # round, a gap from this one, looks for their rows, until one starts after
                    # the time announced.
                    continue
                if relayed.held:
                    wait_for_room(wake, relayed, stopping)
                else:  # the outbox is empty: wait for the next commit
                    wake.wait(LISTEN_POLL_SECONDS)
            except Exception as exc:  # the broker or the database is down: the rows wait
                logger.warning("Relay: could not publish, retrying in %.1f s: %s", retry_in, exc)
                close_old_connections()
                connection.close()  # a broken connection is not reused
                sleep_unless_stopping(retry_in, stopping)
                retry_in = min(retry_in * 2, RETRY_MAX_SECONDS)
    finally:
        wake.close()
