"""Putting message ids on the broker. The only place `notifications` talks to Celery.

Tasks are sent by name so `notifications` never imports `delivery` (DESIGN section 2). A failed
publish is logged, not raised: the message is already committed as `queued`, and the sweeper
re-enqueues whatever the broker never got.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable

from django.db import transaction

from config.celery import (
    BATCH_PRIORITY_OFFSET,
    CHANNEL_QUEUES,
    DEFAULT_QUEUE,
    FAN_OUT_TASK,
    PRIORITY_LEVELS,
    SEND_BATCH_TASK,
    SEND_MESSAGE_TASK,
    app,
)

logger = logging.getLogger(__name__)

# One batch task sends this many messages over one provider connection. Small enough that a
# critical single send waits at most one batch for a free worker.
BATCH_SIZE = 100


def _publish(task: str, args: list, queue: str, priority: int) -> bool:
    try:
        app.send_task(task, args=args, queue=queue, priority=priority)
        return True
    except Exception as exc:
        # One line, no traceback: during an outage this fires once per message.
        logger.warning("Broker unavailable, %s left for the sweeper: %s", task, exc)
        return False


def send_message(message_id, channel: str, priority: str) -> bool:
    return _publish(SEND_MESSAGE_TASK, [str(message_id)], CHANNEL_QUEUES[channel], PRIORITY_LEVELS[priority])


def send_batch(message_ids: list, channel: str, priority: str) -> bool:
    step = PRIORITY_LEVELS[priority] + BATCH_PRIORITY_OFFSET
    return _publish(SEND_BATCH_TASK, [[str(i) for i in message_ids]], CHANNEL_QUEUES[channel], step)


def fan_out(notification_id) -> bool:
    return _publish(FAN_OUT_TASK, [str(notification_id)], DEFAULT_QUEUE, PRIORITY_LEVELS["normal"])


def enqueue(messages: Iterable, *, batched: bool) -> None:
    """Publish queued messages: one task each, or batches per (channel, priority)."""
    if not batched:
        for message in messages:
            send_message(message.id, message.channel, message.priority)
        return
    groups = defaultdict(list)
    for message in messages:
        groups[(message.channel, message.priority)].append(message.id)
    for (channel, priority), ids in groups.items():
        for start in range(0, len(ids), BATCH_SIZE):
            send_batch(ids[start : start + BATCH_SIZE], channel, priority)


def enqueue_on_commit(messages: list, *, batched: bool) -> None:
    """Publish after the transaction that wrote the messages commits, never before."""
    queued = [m for m in messages if m.status == "queued"]
    if queued:
        transaction.on_commit(lambda: enqueue(queued, batched=batched))
