"""The real broker: priority lists on Redis, a real Celery worker, and a broker outage."""

import base64
import json
import time
from datetime import timedelta

import kombu.pools
import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.utils import timezone

from config.celery import app
from delivery import timers
from notifications import queue, services
from notifications.models import Message
from tests.factories import RecipientFactory

from .conftest import CONTENT, accept, add_provider, smtp_config

# Also run on SQLite, the database of `make run` (make test's second pass).
pytestmark = pytest.mark.sqlite


@pytest.fixture
def dead_broker():
    """Point the Celery app at a port where nothing listens, as during a Redis outage."""
    original = app.conf.broker_url
    switch_broker("redis://127.0.0.1:1/0")
    yield
    switch_broker(original)


def switch_broker(url: str) -> None:
    app.conf.broker_url = app.conf.broker_write_url = url
    app.pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()  # kombu keeps producer pools per connection, closed ones included
    queue.reset_publish_backoff()


@pytest.mark.django_db
def test_priorities_land_on_their_own_redis_lists(admin, tenant, ada, broker, django_capture_on_commit_callbacks):
    """0 is the highest step on Redis; bulk batches sit one step below single sends."""
    RecipientFactory(tenant=tenant, external_id="bob")
    with django_capture_on_commit_callbacks(execute=True):
        accept(admin, ["email"], priority="critical")
        accept(admin, ["email"], priority="normal")
        body = {"recipients": ["ada", "bob"], "channels": ["email"], "content": CONTENT, "priority": "low"}
        notification_id = admin.post("/api/v1/notifications", body, format="json").json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        services.fan_out(notification_id)

    assert broker.llen("email") == 1  # critical: step 0
    assert broker.llen("email:2") == 1  # normal single send
    assert broker.llen("email:4") == 1  # one batch of the low bulk send (low + 1)
    assert broker.llen("default:2") == 1  # the fan-out task itself, at normal


@pytest.mark.django_db
def test_accepting_while_the_broker_is_down_answers_202_and_the_sweeper_catches_up(
    admin, ada, broker, dead_broker, django_capture_on_commit_callbacks, monkeypatch
):
    # A backoff window no slow machine outlasts between the two requests.
    monkeypatch.setattr(queue, "PUBLISH_BACKOFF_SECONDS", 600)
    publishes = []
    send_task = app.send_task

    def counting_send_task(*args, **kwargs):
        publishes.append(args)
        return send_task(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", counting_send_task)
    with django_capture_on_commit_callbacks(execute=True):
        [message] = accept(admin, ["email"])
    assert len(publishes) == 1
    with django_capture_on_commit_callbacks(execute=True):
        [second] = accept(admin, ["email"])
    # While backing off, a request does not wait on the dead broker at all: it does not try it.
    assert len(publishes) == 1

    assert Message.objects.filter(pk__in=[message.pk, second.pk], status="queued").count() == 2
    assert broker.llen("email:2") == 0

    # Redis is back. The failed publishes marked the messages for the very next sweep, without
    # waiting out ALERTFLOW_STALE_QUEUED_SECONDS.
    switch_broker(settings.CELERY_BROKER_URL)
    with django_capture_on_commit_callbacks(execute=True):
        assert timers.sweep_stale()["messages"] == 2
    assert broker.llen("email:2") == 2


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_through_the_broker(admin, tenant, ada, smtp_server, broker):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        [message] = accept(admin, ["email"])
        deadline = time.monotonic() + 15
        while Message.objects.get(pk=message.pk).status != "sent" and time.monotonic() < deadline:
            time.sleep(0.1)

    assert Message.objects.get(pk=message.pk).status == "sent"
    assert len(smtp_server.messages) == 1


def waiting_ids(broker, name: str) -> list[str]:
    """The message ids of the single-send tasks waiting in one Redis list."""
    return [json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0] for raw in broker.lrange(name, 0, -1)]


@pytest.mark.django_db
def test_the_sweeper_leaves_a_backlog_waiting_in_the_broker(admin, ada, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            accept(admin, ["email"])
    assert broker.llen("email:2") == 3

    # Ten minutes later the three still wait in the broker, behind a long backlog: publishing
    # them again would only make the backlog longer, at every sweep.
    with django_capture_on_commit_callbacks(execute=True):
        swept = timers.sweep_stale(now=timezone.now() + timedelta(minutes=10))

    assert swept["messages"] == 0
    assert broker.llen("email:2") == 3


@pytest.mark.django_db
def test_the_sweeper_publishes_a_lost_publish_even_behind_newer_tasks(
    admin, ada, broker, django_capture_on_commit_callbacks
):
    # Committed two minutes ago, but the process died before publishing (on_commit never ran).
    [lost] = accept(admin, ["email"])
    Message.objects.filter(pk=lost.pk).update(updated=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        [waiting] = accept(admin, ["email"])

    with django_capture_on_commit_callbacks(execute=True):
        swept = timers.sweep_stale(now=timezone.now() + timedelta(minutes=10))

    # The oldest task in the list was published after `lost` was queued: `lost` is not in it.
    assert swept["messages"] == 1
    assert waiting_ids(broker, "email:2") == [str(lost.id), str(waiting.id)]


@pytest.mark.django_db
def test_a_failed_publish_is_published_at_the_next_sweep_even_behind_a_backlog(
    admin, ada, broker, dead_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        [failed] = accept(admin, ["email"])
    assert Message.objects.get(pk=failed.pk).next_attempt is not None  # marked, for certain
    switch_broker(settings.CELERY_BROKER_URL)
    with django_capture_on_commit_callbacks(execute=True):
        [backlog] = accept(admin, ["email"])  # published after the failure

    with django_capture_on_commit_callbacks(execute=True):
        assert timers.sweep_stale()["messages"] == 1

    assert waiting_ids(broker, "email:2") == [str(failed.id), str(backlog.id)]
    assert Message.objects.get(pk=failed.pk).next_attempt is None
