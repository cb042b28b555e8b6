"""The Celery app: one queue per channel plus `default`, priorities, acks late.

The composition root for Celery: queue names, task names and priority steps are constants of
`alertflow/queues.py` (`notifications` enqueues onto them, `delivery` consumes them); this module
only builds the app from them.
"""

import os

from celery import Celery
from kombu import Queue

# Connects the signals that carry the request id into tasks (and clean a dead pool process's metrics).
from alertflow import task_context  # noqa: F401
from alertflow.queues import ALL_QUEUES, DEFAULT_QUEUE, PRIORITY_LEVELS, PRIORITY_SEPARATOR, PRIORITY_STEPS

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("alertflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_queues=[Queue(name) for name in ALL_QUEUES],
    task_default_queue=DEFAULT_QUEUE,
    task_default_priority=PRIORITY_LEVELS["normal"],
    task_ignore_result=True,
    # A task is acknowledged when it finishes, so a killed worker's task is delivered again;
    # the claim in the delivery pipeline makes the second run harmless.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Keep tasks far shorter than the visibility timeout, or a slow task gets a running twin.
    task_time_limit=300,
    task_soft_time_limit=240,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # kombu's Redis transport, keeping one redis-py client per channel (alertflow/broker.py).
    broker_transport="alertflow.broker:Transport",
    broker_transport_options={
        "priority_steps": PRIORITY_STEPS,
        "sep": PRIORITY_SEPARATOR,
        "queue_order_strategy": "priority",
        "visibility_timeout": 3600,
        "socket_connect_timeout": 2,
    },
    # A publish while Redis is down gives up quickly: the message stays `queued` in PostgreSQL
    # and the sweeper enqueues it again (DESIGN section 3, step 2).
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    timezone="UTC",
)
# Celery's Django fixup closes the database connection around every task unless told to reuse
# it: 2,006 new PostgreSQL sessions for 2,000 sends in bench/e2e. Django's own CONN_MAX_AGE and
# health checks still retire old or broken connections.
app.conf["CELERY_DB_REUSE_MAX"] = 1000
app.autodiscover_tasks()
