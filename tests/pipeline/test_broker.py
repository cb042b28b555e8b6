"""The real broker: priority lists on Redis, the outbox relay and a real Celery worker, and a
broker outage."""

import base64
import json
import time
from datetime import timedelta

import kombu.exceptions
import pytest
from django.conf import settings
from django.utils import timezone

from config.celery import app
from delivery import timers
from notifications import queue, services
from notifications.models import Message, Outbox
from tests.factories import RecipientFactory

from .conftest import CONTENT, accept, add_provider, running_relay, running_worker, smtp_config, switch_broker

# Also run on SQLite, the database of `make run` (make test's second pass).
pytestmark = pytest.mark.sqlite


@pytest.fixture
def dead_broker():
    """Point the Celery app at a port where nothing listens, as during a Redis outage."""
    original = app.conf.broker_url
    switch_broker("redis://127.0.0.1:1/0")
    yield
    switch_broker(original)


@pytest.mark.django_db
def test_priorities_land_on_their_own_redis_lists(admin, tenant, ada, broker):
    """0 is the highest step on Redis; bulk batches sit one step below single sends."""
    RecipientFactory(tenant=tenant, external_id="bob")
    accept(admin, ["email"], priority="critical")
    accept(admin, ["email"], priority="normal")
    body = {"recipients": ["ada", "bob"], "channels": ["email"], "content": CONTENT, "priority": "low"}
    notification_id = admin.post("/api/v1/notifications", body, format="json").json()["id"]
    services.fan_out(notification_id)
    assert not broker.exists("email", "email:2", "email:4", "default:2")  # only outbox rows so far
    queue.relay_all()

    assert broker.llen("email") == 1  # critical: step 0
    assert broker.llen("email:2") == 1  # normal single send
    assert broker.llen("email:4") == 1  # one batch of the low bulk send (low + 1)
    assert broker.llen("default:2") == 1  # the fan-out task itself, at normal


@pytest.mark.django_db
def test_accepting_while_the_broker_is_down_answers_202_and_the_relay_catches_up(
    admin, ada, broker, dead_broker, monkeypatch
):
    publishes = []
    send_task = app.send_task

    def counting_send_task(*args, **kwargs):
        publishes.append(args)
        return send_task(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", counting_send_task)
    [message] = accept(admin, ["email"])
    [second] = accept(admin, ["email"])
    # A request never talks to the broker: its messages wait in the outbox for the relay.
    assert publishes == []
    with pytest.raises(kombu.exceptions.OperationalError):  # a refused connection
        queue.relay_once()
    assert Outbox.objects.count() == 2  # kept: the relay's transaction rolled back
    assert Message.objects.filter(pk__in=[message.pk, second.pk], status="queued").count() == 2
    assert broker.llen("email:2") == 0

    # Redis is back: the relay publishes both (in one task) and empties the outbox. The
    # sweeper has nothing to do, even long after: no publish was lost.
    switch_broker(settings.CELERY_BROKER_URL)
    assert queue.relay_all() == 2
    assert waiting_ids(broker, "email:2") == [[str(message.id), str(second.id)]]
    assert Outbox.objects.count() == 0
    assert timers.sweep_stale(now=timezone.now() + timedelta(minutes=10))["messages"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_through_the_relay_and_the_broker(admin, tenant, ada, smtp_server, broker):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    with running_relay(), running_worker():
        [message] = accept(admin, ["email"])
        deadline = time.monotonic() + 15
        while Message.objects.get(pk=message.pk).status != "sent" and time.monotonic() < deadline:
            time.sleep(0.1)

    assert Message.objects.get(pk=message.pk).status == "sent"
    assert len(smtp_server.messages) == 1
    assert Outbox.objects.count() == 0


def waiting_ids(broker, name: str) -> list:
    """The message ids of the send tasks waiting in one Redis list, oldest last: an id for a
    task of one single send, a list for a batch."""
    return [json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0] for raw in broker.lrange(name, 0, -1)]


@pytest.mark.django_db
def test_the_sweeper_leaves_a_backlog_waiting_in_the_broker(admin, ada, broker):
    for _ in range(3):
        accept(admin, ["email"])
        queue.relay_all()
    assert broker.llen("email:2") == 3

    # Ten minutes later the three still wait in the broker, behind a long backlog: publishing
    # them again would only make the backlog longer, at every sweep.
    swept = timers.sweep_stale(now=timezone.now() + timedelta(minutes=10))
    queue.relay_all()

    assert swept["messages"] == 0
    assert broker.llen("email:2") == 3


@pytest.mark.django_db
def test_the_sweeper_publishes_what_the_broker_lost_even_behind_newer_tasks(admin, ada, broker):
    # Published two minutes ago, then lost by the broker (a Redis restarted without its data).
    [lost] = accept(admin, ["email"])
    queue.relay_all()
    broker.flushdb()
    Message.objects.filter(pk=lost.pk).update(updated=timezone.now() - timedelta(minutes=2))
    [waiting] = accept(admin, ["email"])
    queue.relay_all()

    swept = timers.sweep_stale(now=timezone.now() + timedelta(minutes=10))
    queue.relay_all()

    # The oldest task in the list was published after `lost` was queued: `lost` is not in it.
    assert swept["messages"] == 1
    assert waiting_ids(broker, "email:2") == [str(lost.id), str(waiting.id)]


@pytest.mark.django_db
def test_the_sweeper_leaves_what_waits_in_the_outbox_to_the_relay(admin, ada, broker, dead_broker):
    [unpublished] = accept(admin, ["email"])
    with pytest.raises(kombu.exceptions.OperationalError):
        queue.relay_once()
    switch_broker(settings.CELERY_BROKER_URL)

    # Long after, with an empty broker list: its row still waits in the outbox (the relay was
    # down too), so its publish is not lost, only not done yet; sweeping it would publish twice.
    assert timers.sweep_stale(now=timezone.now() + timedelta(minutes=10))["messages"] == 0
    assert queue.relay_all() == 1
    assert waiting_ids(broker, "email:2") == [str(unpublished.id)]
