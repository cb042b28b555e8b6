"""Putting message ids on the broker. The only place `notifications` talks to Celery.

Tasks are sent by name so `notifications` never imports `delivery` (DESIGN section 2). A failed
publish is logged, not raised: the message is already committed as `queued`, and the sweeper
re-enqueues whatever the broker never got.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alertflow.queues import (
    BATCH_PRIORITY_OFFSET,
    CHANNEL_QUEUES,
    DEFAULT_QUEUE,
    FAN_OUT_TASK,
    PRIORITY_LEVELS,
    SEND_BATCH_TASK,
    SEND_MESSAGE_TASK,
)

from .models import Message

logger = logging.getLogger(__name__)

# After a failed publish, this process leaves the broker alone for a few seconds. Without it,
# every request during a Redis outage waits out the connection retries (measured in the Redis
# drill: p99 3.4 s at 20 sends/s), when the sweeper publishes those messages anyway.
PUBLISH_BACKOFF_SECONDS = 5.0
_broker_down_until = 0.0

# One batch task sends this many messages over one provider connection. Small enough that a
# critical single send waits at most one batch for a free worker.
BATCH_SIZE = 100


def _publish(task: str, args: list, queue: str, priority: int) -> bool:
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return False
    try:
        # The app config/celery.py composes (config/__init__.py makes it the current one).
        current_app.send_task(task, args=args, queue=queue, priority=priority)
        return True
    except Exception as exc:
        _broker_down_until = time.monotonic() + PUBLISH_BACKOFF_SECONDS
        logger.warning("Broker unavailable, %s left for the sweeper: %s", task, exc)
        return False


def reset_publish_backoff() -> None:
    """Forget a past broker failure (the broker is known to be back)."""
    global _broker_down_until
    _broker_down_until = 0.0


def _leave_for_sweeper(message_ids: list) -> None:
    """Messages whose publish failed are made as stale as the sweeper's threshold, so its very
    next run publishes them instead of waiting out ALERTFLOW_STALE_QUEUED_SECONDS."""
    stale = timezone.now() - timedelta(seconds=settings.ALERTFLOW_STALE_QUEUED_SECONDS + 1)
    try:
        Message.objects.filter(pk__in=message_ids, status=Message.Status.QUEUED).update(updated=stale)
    except Exception:
        logger.warning("Could not mark %d unpublished message(s); the sweeper finds them later", len(message_ids))


def send_message(message_id, channel: str, priority: str) -> bool:
    return _publish(SEND_MESSAGE_TASK, [str(message_id)], CHANNEL_QUEUES[channel], PRIORITY_LEVELS[priority])


def send_batch(message_ids: list, channel: str, priority: str) -> bool:
    step = PRIORITY_LEVELS[priority] + BATCH_PRIORITY_OFFSET
    return _publish(SEND_BATCH_TASK, [[str(i) for i in message_ids]], CHANNEL_QUEUES[channel], step)


def fan_out(notification_id) -> bool:
    return _publish(FAN_OUT_TASK, [str(notification_id)], DEFAULT_QUEUE, PRIORITY_LEVELS["normal"])


def enqueue(messages: Iterable) -> None:
    """Publish queued messages: a transactional one as its own task, the messages of bulk and
    topic sends (`Message.batched`) in batches per (channel, priority)."""
    unpublished = []
    batches = defaultdict(list)
    for message in messages:
        if message.batched:
            batches[(message.channel, message.priority)].append(message.id)
        elif not send_message(message.id, message.channel, message.priority):
            unpublished.append(message.id)
    for (channel, priority), ids in batches.items():
        for start in range(0, len(ids), BATCH_SIZE):
            chunk = ids[start : start + BATCH_SIZE]
            if not send_batch(chunk, channel, priority):
                unpublished.extend(chunk)
    if unpublished:
        _leave_for_sweeper(unpublished)


def enqueue_on_commit(messages: list) -> None:
    """Publish after the transaction that wrote the messages commits, never before."""
    queued = [m for m in messages if m.status == "queued"]
    if queued:
        transaction.on_commit(lambda: enqueue(queued))
