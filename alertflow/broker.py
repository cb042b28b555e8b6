"""How many tasks wait on each queue, read from the broker itself (the admin dashboard, metrics).

On the Redis transport a queue is one Redis list per priority step (`email`, `email:1`, ...,
config/celery.py); its depth is the sum of their lengths.
"""

import logging

from celery import current_app

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
