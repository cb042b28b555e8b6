"""The broker: how many tasks wait on each queue, read from the broker itself (the admin
dashboard, metrics), and the Redis transport Celery uses (`Transport`).

On the Redis transport a queue is one Redis list per priority step (`email`, `email:1`, ...,
config/celery.py); its depth is the sum of their lengths.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from celery import current_app
from kombu.transport import redis as kombu_redis

from .queues import ALL_QUEUES, PRIORITY_SEPARATOR, PRIORITY_STEPS

logger = logging.getLogger(__name__)


def priority_lists(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def queue_depths() -> dict[str, int] | None:
    """Tasks waiting per queue (not those a worker holds unacknowledged); None when the broker
    does not answer or is not Redis."""
    try:
        with current_app.connection_for_read() as connection:
            redis_client = getattr(connection.default_channel, "client", None)
            if redis_client is None:
                return None
            pipeline = redis_client.pipeline(transaction=False)
            for queue in ALL_QUEUES:
                for name in priority_lists(queue):
                    pipeline.llen(name)
            lengths = iter(pipeline.execute())
    except Exception as exc:
        logger.warning("Queue depths: the broker did not answer: %s", exc.__class__.__name__)
        return None
    return {queue: sum(next(lengths) for _ in PRIORITY_STEPS) for queue in ALL_QUEUES}


class Channel(kombu_redis.Channel):
    """kombu's Redis channel keeping one redis-py client for its own commands.

    kombu builds a new `redis.Redis` (`conn_or_acquire`) for every write to the unacked index
    when a task is received and for every ack: 3% of a worker's CPU on single sends (py-spy of
    bench.e2e), for an object that holds no connection of its own (its pool does). The kept
    client uses the channel's pool, and is replaced with it (the pool is rebuilt after a fork);
    a connection Redis dropped is reconnected by the pool, as before.
    """

    _kept: tuple[redis.ConnectionPool, redis.Redis] | None = None

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        pool = self.pool
        if self._kept is None or self._kept[0] is not pool:
            self._kept = (pool, self._create_client())
        yield self._kept[1]


class Transport(kombu_redis.Transport):
    """Celery's broker transport for `redis://` URLs (config/celery.py `broker_transport`).
    kombu picks its own for a `redis+socket://` URL (the embedded Redis of `make run`)."""

    Channel = Channel
