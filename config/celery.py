"""The Celery app: one queue per channel plus `default`, priorities, acks late.

The composition root for Celery: queue names, task names and priority steps are constants of
`alertflow/queues.py` (`notifications` enqueues onto them, `delivery` consumes them); this module
only builds the app from them.
"""

import os

from celery import Celery
from celery.signals import task_prerun
from django.db import close_old_connections
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
# it: 2,006 new PostgreSQL sessions for 2,000 sends in bench/e2e. Reused, the fixup only counts
# tasks: check_database_connections below retires old or broken connections.
app.conf["CELERY_DB_REUSE_MAX"] = 1000


@task_prerun.connect(dispatch_uid="config.celery.check_database_connections")
def check_database_connections(task=None, **kwargs) -> None:
    """What Django does when a request starts, when a task starts: a connection the last task
    left broken or in a transaction, or older than CONN_MAX_AGE, is closed, and one the server
    ended (a restart, pg_terminate_backend, idle_session_timeout) fails the health check of the
    task's first query and is replaced. Without it, the first task after such an end failed on
    the dead connection (OperationalError), and only the next got a new one. The check asks the
    socket first (alertflow/postgresql/base.py): no round trip while the server said nothing."""
    if task is not None and getattr(task.request, "is_eager", False):
        return  # run in the caller's process: its request or transaction owns the connection
    close_old_connections()


app.autodiscover_tasks()
