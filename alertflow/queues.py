"""Queue names, task names and priority steps: the seam between `notifications` and `delivery`.

A leaf module (DESIGN section 2): `notifications` enqueues by task name onto these queues,
`delivery` registers the tasks and consumes the queues, and `config/celery.py` composes the
Celery app from them. None of them imports another to learn a name.
"""

from .channels import CHANNELS

DEFAULT_QUEUE = "default"
CHANNEL_QUEUES = {channel.name: channel.queue for channel in CHANNELS.values()}
# Tenant webhooks out: slow or dead tenant endpoints must never hold back a channel's sends.
WEBHOOK_QUEUE = "webhooks"
ALL_QUEUES = [DEFAULT_QUEUE, *dict.fromkeys(CHANNEL_QUEUES.values()), WEBHOOK_QUEUE]

# On the Redis transport 0 is the highest priority (the opposite of RabbitMQ), and each step is
# its own Redis list: one step per level we use, popped in this order (DESIGN section 7).
PRIORITY_LEVELS = {"critical": 0, "high": 1, "normal": 2, "low": 3}
# Batches of a bulk or topic send queue one step below single sends of the same priority, so a
# tenant's 100,000-recipient campaign never holds back anyone's transactional sends (fair share).
BATCH_PRIORITY_OFFSET = 1
PRIORITY_STEPS = list(range(max(PRIORITY_LEVELS.values()) + BATCH_PRIORITY_OFFSET + 1))
# Between a queue's name and its step in the names of its Redis lists: `email`, `email:1`, ...
PRIORITY_SEPARATOR = ":"

# Celery worker processes (prefork) per core. A delivery task spends most of its time waiting on a
# provider, PostgreSQL or Redis, so one process per core (Celery's default) leaves cores idle: on
# 2 cores one bulk of 5,000 went out faster with 4 processes than with 2 in 5 of 6 side-by-side
# pairs (medians 530 and 293/s), at the same CPU per email (bench/README, "2026-12-04 (session
# 2): issue 14, worker"). Settings (`WORKER_CONCURRENCY`), `make run` and bench/ start from it.
WORKER_PROCESSES_PER_CORE = 2

# Task names: `notifications` enqueues by name, `delivery` registers them (DESIGN section 2).
SEND_MESSAGE_TASK = "delivery.send_message"
SEND_BATCH_TASK = "delivery.send_batch"
FAN_OUT_TASK = "notifications.fan_out"
# Beat's trigger for a campaign (django-celery-beat PeriodicTask rows name it).
CAMPAIGN_TASK = "notifications.run_campaign"
# Beat's due-webhook poller, on WEBHOOK_QUEUE (delivery/webhooks/relay.py).
RELAY_WEBHOOKS_TASK = "delivery.relay_webhooks"
# Beat's hourly retention prune of old webhook events, on WEBHOOK_QUEUE.
PRUNE_WEBHOOKS_TASK = "delivery.prune_webhooks"
