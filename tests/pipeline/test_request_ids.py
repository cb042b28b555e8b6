"""One grep follows a notification: the API request's id travels in the task's headers and is on
every log line of the task, the provider call's included (alertflow/task_context.py)."""

import base64
import json
import logging
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from alertflow.logging import RequestIdFilter, request_id_var
from alertflow.task_context import REQUEST_ID_HEADER
from delivery import timers
from delivery.tasks import send_message
from notifications import queue
from notifications.models import Message
from tests.logs import at_info_into

from .conftest import CONTENT, add_provider, smtp_config

REQUEST_ID = "req-4711-trace"


@pytest.fixture
def json_lines():
    """The project's JSON log lines (settings.LOGGING's formatter and filter), at INFO."""
    from pythonjsonlogger.json import JsonFormatter

    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            # Not the SMTP fake's own server lines (aiosmtpd's `mail.log`, in this process).
            if not record.name.startswith("mail."):
                lines.append(json.loads(self.format(record)))

    formatter = settings.LOGGING["formatters"]["json"]
    handler = Collect(level=logging.INFO)
    handler.setFormatter(JsonFormatter(formatter["fmt"], rename_fields=formatter["rename_fields"]))
    handler.addFilter(RequestIdFilter())
    with at_info_into(handler):
        yield lines


def published(broker, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]


@pytest.mark.django_db
def test_the_request_id_is_in_the_task_headers_and_on_the_provider_call_log_line(
    admin, tenant, ada, smtp_server, broker, json_lines
):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    body = {"recipient": "ada", "channels": ["email"], "content": CONTENT, "data": {"code": "4711"}}
    response = admin.post("/api/v1/notifications", body, format="json", HTTP_X_REQUEST_ID=REQUEST_ID)
    request_id_var.set("")  # the relay runs in a process of its own: the outbox row carries the id
    queue.relay_all()
    assert response.status_code == 202
    assert response["X-Request-ID"] == REQUEST_ID
    [task] = published(broker, "email:2")  # a normal single send
    assert task["headers"][REQUEST_ID_HEADER] == REQUEST_ID

    # The worker's side: the task as a worker would run it, with the headers it was published with.
    request_id_var.set("")  # another request's id must not leak in: the header alone carries it
    message_id = json.loads(base64.b64decode(task["body"]))[0][0]
    json_lines.clear()
    send_message.apply(args=[message_id], headers={REQUEST_ID_HEADER: task["headers"][REQUEST_ID_HEADER]})

    assert Message.objects.get(pk=message_id).status == Message.Status.SENT
    calls = [line for line in json_lines if line["message"].startswith("provider_call:")]
    assert len(calls) == 1
    assert len(smtp_server.messages) == 1
    # Every line the task logged carries it, the provider call's included.
    assert {line["request_id"] for line in json_lines} == {REQUEST_ID}
    assert message_id in calls[0]["message"]
    # Neither the address nor the content is logged at INFO.
    logged = json.dumps(json_lines)
    assert "ada@example.com" not in logged
    assert "Hello Ada" not in logged and "Code 4711" not in logged
    # After the task, its id is not left on the worker's next lines.
    assert request_id_var.get() == ""


@pytest.mark.django_db
def test_a_task_published_by_a_task_carries_the_request_id_on(broker):
    from celery import current_app

    request_id_var.set(REQUEST_ID)
    try:
        current_app.send_task("delivery.enqueue_due", queue="default")
    finally:
        request_id_var.set("")
    [task] = published(broker, "default") or published(broker, "default:2")
    assert task["headers"][REQUEST_ID_HEADER] == REQUEST_ID


@pytest.mark.django_db
def test_a_task_published_without_a_request_logs_under_its_own_task_id(json_lines):
    from delivery.tasks import enqueue_due

    json_lines.clear()
    result = enqueue_due.apply(task_id="task-abc")

    assert result.successful()
    assert json_lines and {line["request_id"] for line in json_lines} == {"task-abc"}
    assert request_id_var.get() == ""


@contextmanager
def as_the_poller():
    """The due poller and the sweeper run as beat's tasks, under their own task ids."""
    request_id_var.set("task-of-the-poller")
    try:
        yield
    finally:
        request_id_var.set("")


def accepted(admin, **fields) -> Message:
    body = {"recipient": "ada", "channels": ["email"], "content": CONTENT, "data": {"code": "4711"}, **fields}
    response = admin.post("/api/v1/notifications", body, format="json", HTTP_X_REQUEST_ID=REQUEST_ID)
    assert response.status_code == 202, response.content
    request_id_var.set("")
    return Message.objects.get(notification_id=response.json()["id"])


def published_request_ids(broker) -> list[str]:
    queue.relay_all()
    return [task["headers"][REQUEST_ID_HEADER] for task in published(broker, "email:2")]


@pytest.mark.django_db
def test_a_scheduled_send_is_published_under_its_request_id(admin, ada, broker):
    send_at = timezone.now() + timedelta(hours=1)
    assert accepted(admin, send_at=send_at.isoformat()).status == Message.Status.SCHEDULED

    with as_the_poller():
        assert timers.enqueue_due(now=send_at) == 1

    assert published_request_ids(broker) == [REQUEST_ID]


@pytest.mark.django_db
def test_a_retried_send_is_published_under_its_request_id(admin, ada, broker):
    message = accepted(admin)
    queue.relay_all()
    broker.delete("email:2")  # taken by a worker, whose attempt failed for a while
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.RETRYING, attempts=1, next_attempt=timezone.now() - timedelta(seconds=1)
    )

    with as_the_poller():
        assert timers.enqueue_due() == 1

    assert published_request_ids(broker) == [REQUEST_ID]


@pytest.mark.django_db
def test_a_lost_publish_is_published_again_under_its_request_id(admin, ada, broker):
    accepted(admin)
    queue.relay_all()
    broker.delete("email:2")  # the broker lost it

    with as_the_poller():
        assert timers.sweep_stale(now=timezone.now() + timedelta(hours=1))["messages"] == 1

    assert published_request_ids(broker) == [REQUEST_ID]
