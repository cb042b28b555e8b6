"""A worker whose PostgreSQL session was ended under it (a restart, pg_terminate_backend,
idle_session_timeout) runs its next task on a new connection, not into the dead one."""

import threading
import time

import pytest
from celery.signals import task_postrun
from django.db import connection

from config.celery import app

from .conftest import running_worker


def other_pids() -> list[int]:
    """Sessions on the test database besides this thread's: the worker's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_a_task_after_the_workers_backend_was_terminated_succeeds(broker):
    states = []
    ran = threading.Semaphore(0)

    def finished(state=None, **kwargs):
        states.append(state)
        ran.release()

    before = set(other_pids())
    task_postrun.connect(finished, weak=False)
    try:
        with running_worker():
            app.send_task("delivery.enqueue_due", queue="default")  # a task that queries the database
            assert ran.acquire(timeout=15), "the worker ran no task"
            workers = set(other_pids()) - before
            assert workers
            with connection.cursor() as cursor:
                for pid in workers:
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            deadline = time.monotonic() + 10
            while set(other_pids()) & workers:
                assert time.monotonic() < deadline
                time.sleep(0.02)

            app.send_task("delivery.enqueue_due", queue="default")
            assert ran.acquire(timeout=15), "the worker ran no second task"
    finally:
        task_postrun.disconnect(finished)

    assert states == ["SUCCESS", "SUCCESS"]
