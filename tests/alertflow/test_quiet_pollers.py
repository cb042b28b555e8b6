"""Beat's every-second pollers (the due poller, the webhook relay) leave no log line for a run
that did nothing (alertflow.logging.QuietPollers, on the console handler of settings.LOGGING):
6 lines a second before. The lines come from Celery's own code: beat's `apply_entry`, and the
worker's "received" and "succeeded" lines with the context Celery passes them."""

import logging
import logging.config

import pytest
from celery import beat
from celery.app import trace
from django.conf import settings

from config.celery import app
from tests.logs import at_info_into

DUE_POLLER = settings.CELERY_BEAT_SCHEDULE["enqueue-due-messages"]["task"]
HOURLY = settings.CELERY_BEAT_SCHEDULE["prune-webhooks"]["task"]


@pytest.fixture
def console_lines():
    """The messages that pass the console handler's filters, as settings.LOGGING makes them."""
    configurator = logging.config.DictConfigurator(settings.LOGGING)
    names = settings.LOGGING["handlers"]["console"]["filters"]
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.name.startswith("celery."):
                lines.append(record.getMessage())

    handler = Collect(level=logging.INFO)
    for name in names:
        handler.addFilter(configurator.configure_filter(dict(settings.LOGGING["filters"][name])))
    with at_info_into(handler):
        yield lines


def beat_sends(name: str, task: str) -> None:
    """Beat's line for a due entry, from its own `apply_entry` (the publish itself left out)."""
    scheduler = beat.Scheduler(app, lazy=True)
    scheduler.apply_async = lambda *args, **kwargs: None
    scheduler.apply_entry(beat.ScheduleEntry(name=name, task=task, schedule=1.0, app=app))


def worker_runs(task: str, returned: str) -> None:
    """The worker's two lines for a run, as Celery writes them (worker/strategy.py, app/trace.py)."""
    received = {"id": "6f1c", "name": task, "args": "()", "kwargs": "{}", "eta": None}
    logging.getLogger("celery.worker.strategy").info(trace.LOG_RECEIVED, received, extra={"data": received})
    trace.info(trace.LOG_SUCCESS, {"id": "6f1c", "name": task, "return_value": returned, "runtime": 0.003})


def test_a_poller_run_that_did_nothing_leaves_no_line(console_lines):
    beat_sends("enqueue-due-messages", DUE_POLLER)
    worker_runs(DUE_POLLER, "0")

    assert console_lines == []


def test_a_poller_run_that_did_work_says_so_once(console_lines):
    beat_sends("enqueue-due-messages", DUE_POLLER)
    worker_runs(DUE_POLLER, "12")

    assert console_lines == [f"Task {DUE_POLLER}[6f1c] succeeded in 0.003s: 12"]


def test_other_tasks_and_every_warning_keep_their_lines(console_lines):
    beat_sends("prune-webhooks", HOURLY)
    worker_runs(HOURLY, "0")
    logging.getLogger("celery.app.trace").warning("Task %(name)s[%(id)s] retry", {"name": DUE_POLLER, "id": "1"})

    assert console_lines == [
        f"Scheduler: Sending due task prune-webhooks ({HOURLY})",
        f"Task {HOURLY}[6f1c] received",
        f"Task {HOURLY}[6f1c] succeeded in 0.003s: 0",
        f"Task {DUE_POLLER}[1] retry",
    ]
