"""A real worker started by a test (running_worker, a thread) closes its database connections
when it stops: left open, the test database could not be dropped at the end of the run."""

import threading
import time

import pytest
from celery.signals import task_postrun
from django.db import connection

from config.celery import app

from .conftest import running_worker


def other_sessions() -> int:
    """Sessions on the test database besides this thread's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_leaves_no_database_connection_open(broker):
    before = other_sessions()
    ran = threading.Event()

    def finished(**kwargs):
        ran.set()

    task_postrun.connect(finished, weak=False)
    try:
        with running_worker():
            app.send_task("delivery.enqueue_due", queue="default")  # a task that queries the database
            assert ran.wait(15), "the worker ran no task"
    finally:
        task_postrun.disconnect(finished)

    deadline = time.monotonic() + 5  # PostgreSQL lists a closed session for a moment longer
    while other_sessions() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert other_sessions() == before, f"{other_sessions() - before} session(s) left open"
