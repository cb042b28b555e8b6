"""Putting message ids on the broker. The only place `notifications` talks to Celery.

Tasks are sent by name so `notifications` never imports `delivery` (DESIGN section 2). A failed
publish is logged, not raised: the message is already committed as `queued`, and the sweeper
re-enqueues whatever the broker never got.

How the sweeper tells a lost publish from a message waiting in a long backlog (it must not
publish the backlog again, DESIGN section 3):

- a publish that failed is known for certain: the message is marked (`next_attempt` set on a
  `queued` message, the one timer it can have) and the sweeper's next run publishes it;
- a publish that never happened (the process died between commit and publish) or that the
  broker lost leaves no mark. Every task carries when its messages were queued
  (`QUEUED_HEADER`: their `updated`, the earliest of a batch's), and each (queue, priority
  step) is a FIFO list on Redis: if the oldest task waiting in a message's list holds messages
  queued well after it, the message cannot be waiting behind that task, so its publish was
  lost. `oldest_waiting` reads the head of each list. (The time of the publish itself would not
  do: a long transaction, such as 20,000 messages written at once, publishes its first task long
  after it queued its messages, and they would all look lost.)
"""

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from celery import current_app
from django.db import transaction
from django.utils import timezone

from alertflow.queues import (
    BATCH_PRIORITY_OFFSET,
    CHANNEL_QUEUES,
    DEFAULT_QUEUE,
    FAN_OUT_TASK,
    PRIORITY_LEVELS,
    PRIORITY_STEPS,
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


# A message header: when the task's messages were queued (Unix time), read back by oldest_waiting.
QUEUED_HEADER = "af_queued"


def _publish(task: str, args: list, queue: str, priority: int, queued_at: float | None = None) -> bool:
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return False
    try:
        # The app config/celery.py composes (config/__init__.py makes it the current one).
        headers = {QUEUED_HEADER: time.time() if queued_at is None else queued_at}
        current_app.send_task(task, args=args, queue=queue, priority=priority, headers=headers)
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
    """Mark messages whose publish failed, for certain: the sweeper's next run publishes them
    (`next_attempt` on a `queued` message means "publish again from then")."""
    try:
        Message.objects.filter(pk__in=message_ids, status=Message.Status.QUEUED).update(next_attempt=timezone.now())
    except Exception:
        logger.warning("Could not mark %d unpublished message(s); the sweeper finds them later", len(message_ids))


def priority_step(priority: str, batched: bool) -> int:
    """The Redis list (priority step) a message's task goes to: batches one step below."""
    return PRIORITY_LEVELS[priority] + (BATCH_PRIORITY_OFFSET if batched else 0)


def _list_name(queue: str, step: int) -> str:
    # kombu's Redis transport: step 0 is the queue's own list, step n is `queue` + sep + n
    # (config/celery.py sets sep to ":").
    return f"{queue}:{step}" if step else queue


def oldest_waiting(queues: Iterable[str]) -> dict[tuple[str, int], datetime | None]:
    """When the messages of the oldest task still waiting in each (queue, step) list were
    queued; None for an empty list. A task without the header (published before it existed)
    counts as queued at the epoch: nothing is taken for lost behind it. Raises if the broker
    cannot be reached."""
    keys = [(queue, step) for queue in dict.fromkeys(queues) for step in PRIORITY_STEPS]
    with current_app.connection_for_read() as connection:
        client = connection.default_channel.client
        pipe = client.pipeline(transaction=False)
        for queue, step in keys:
            # kombu pushes on the left and pops on the right: the right end is the oldest.
            pipe.lindex(_list_name(queue, step), -1)
        heads = pipe.execute()
    waiting = {}
    for key, head in zip(keys, heads, strict=True):
        if head is None:
            waiting[key] = None
            continue
        queued = json.loads(head).get("headers", {}).get(QUEUED_HEADER, 0)
        waiting[key] = datetime.fromtimestamp(float(queued), UTC)
    return waiting


def _queued_at(messages: list) -> float | None:
    """When the earliest of these messages was queued (`updated`), if the caller loaded it."""
    known = [m.updated for m in messages if "updated" not in m.get_deferred_fields()]
    return min(known).timestamp() if known else None


def send_message(message) -> bool:
    step = priority_step(message.priority, batched=False)
    queue = CHANNEL_QUEUES[message.channel]
    return _publish(SEND_MESSAGE_TASK, [str(message.id)], queue, step, _queued_at([message]))


def send_batch(messages: list, channel: str, priority: str) -> bool:
    step = priority_step(priority, batched=True)
    ids = [str(m.id) for m in messages]
    return _publish(SEND_BATCH_TASK, [ids], CHANNEL_QUEUES[channel], step, _queued_at(messages))


def fan_out(notification_id, after: int | None = None) -> bool:
    """Publish a fan-out step; `after` is the checkpoint it continues from (None: wherever the
    notification's checkpoint is when it runs)."""
    return _publish(FAN_OUT_TASK, [str(notification_id), after], DEFAULT_QUEUE, PRIORITY_LEVELS["normal"])


def enqueue(messages: Iterable) -> None:
    """Publish queued messages: a transactional one as its own task, the messages of bulk and
    topic sends (`Message.batched`) in batches per (channel, priority)."""
    unpublished = []
    batches = defaultdict(list)
    for message in messages:
        if message.batched:
            batches[(message.channel, message.priority)].append(message)
        elif not send_message(message):
            unpublished.append(message.id)
    for (channel, priority), batch in batches.items():
        for start in range(0, len(batch), BATCH_SIZE):
            chunk = batch[start : start + BATCH_SIZE]
            if not send_batch(chunk, channel, priority):
                unpublished.extend(m.id for m in chunk)
    if unpublished:
        _leave_for_sweeper(unpublished)


def enqueue_on_commit(messages: list) -> None:
    """Publish after the transaction that wrote the messages commits, never before."""
    queued = [m for m in messages if m.status == "queued"]
    if queued:
        transaction.on_commit(lambda: enqueue(queued))
