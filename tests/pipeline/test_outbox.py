"""The transactional outbox (notifications/queue.py) and its relay (notifications/relay.py): a
request only commits rows; the relay publishes what committed, and only that, in batches."""

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from celery.signals import task_prerun
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alertflow import redis as alertflow_redis
from alertflow.logging import request_id_var
from alertflow.queues import SEND_BATCH_TASK, SEND_MESSAGE_TASK
from alertflow.task_context import REQUEST_ID_HEADER, request_id_of
from config.celery import app
from delivery import pipeline
from notifications import queue, relay
from notifications.models import Message, Outbox
from tests.factories import RecipientFactory

from .conftest import CONTENT, accept, add_provider, running_relay, running_worker, smtp_config


def tasks_in(broker, name: str) -> list[dict]:
    """The tasks waiting in one Redis list, oldest first: {task, args, headers}."""
    tasks = []
    for raw in reversed(broker.lrange(name, 0, -1)):
        envelope = json.loads(raw)
        args = json.loads(base64.b64decode(envelope["body"]))[0]
        tasks.append({"task": envelope["headers"]["task"], "args": args, "headers": envelope["headers"]})
    return tasks


def ids_of(task: dict) -> list[str]:
    """The message ids a send task carries: a batch its list, a single send its one id."""
    return task["args"][0] if task["task"] == SEND_BATCH_TASK else task["args"]


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.mark.sqlite
@pytest.mark.django_db
def test_a_send_writes_one_outbox_row_per_queue_and_publishes_nothing_itself(admin, ada, broker):
    messages = accept(admin, ["email", "sms"])

    rows = list(Outbox.objects.order_by("queue"))
    assert [(row.task, row.queue, row.step) for row in rows] == [
        (SEND_MESSAGE_TASK, "email", 2),
        (SEND_MESSAGE_TASK, "sms", 2),
    ]
    assert sorted(id_ for row in rows for id_ in row.args) == sorted(str(m.id) for m in messages)
    assert not broker.exists("email:2", "sms:2")

    assert queue.relay_all() == 2
    assert [t["args"] for t in tasks_in(broker, "email:2")] == [[str(messages[0].id)]]
    assert Outbox.objects.count() == 0


@pytest.mark.sqlite
@pytest.mark.django_db
def test_a_rolled_back_accept_leaves_nothing_to_publish(admin, ada, broker):
    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned), transaction.atomic():
        accept(admin, ["email"])  # its transaction is part of this one, which rolls back
        assert Outbox.objects.count() == 1
        raise Abandoned

    assert Outbox.objects.count() == 0
    assert queue.relay_all() == 0
    assert not broker.exists("email:2")


@pytest.mark.sqlite
@pytest.mark.django_db
def test_the_singles_of_a_burst_go_out_in_small_batches_at_their_own_step(admin, tenant, broker):
    recipients = [RecipientFactory(tenant=tenant, email=f"r{i}@example.com") for i in range(45)]
    ids = [str(accept(admin, ["email"], recipient=r.external_id)[0].id) for r in recipients]
    [critical] = accept(admin, ["email"], recipient=recipients[0].external_id, priority="critical")

    queue.relay_all()

    normal = tasks_in(broker, "email:2")
    assert [t["task"] for t in normal] == [SEND_BATCH_TASK] * 3
    assert [t["args"][0] for t in normal] == [ids[:20], ids[20:40], ids[40:]]
    # Not behind the normal ones, nor one step down with bulk batches: a task of its own at step 0.
    assert tasks_in(broker, "email") == [
        {"task": SEND_MESSAGE_TASK, "args": [str(critical.id)], "headers": tasks_in(broker, "email")[0]["headers"]}
    ]


@pytest.mark.django_db
def test_a_batch_of_singles_is_delivered_by_one_task(admin, tenant, smtp_server, broker):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    recipients = [RecipientFactory(tenant=tenant, email=f"r{i}@example.com") for i in range(3)]
    for recipient in recipients:
        accept(admin, ["email"], recipient=recipient.external_id)
    queue.relay_all()
    [task] = tasks_in(broker, "email:2")

    assert pipeline.deliver(ids_of(task)) == 3
    assert len(smtp_server.messages) == 3


@pytest.mark.django_db(transaction=True)
def test_the_relay_publishes_only_what_committed(admin, ada, broker):
    writing, committed = threading.Event(), threading.Event()
    finish = threading.Event()

    def accept_and_wait():
        # Another connection: this transaction is the request's, open until `finish`.
        try:
            with transaction.atomic():
                accept(admin, ["email"])
                writing.set()
                finish.wait(10)
            committed.set()
        finally:
            connection.close()

    request = threading.Thread(target=accept_and_wait)
    request.start()
    try:
        assert writing.wait(10)
        assert queue.relay_all() == 0  # its row exists, but not for anyone else yet
        assert not broker.exists("email:2")
    finally:
        finish.set()
        request.join(10)
    assert committed.is_set()
    assert queue.relay_all() == 1
    assert len(tasks_in(broker, "email:2")) == 1


def accept_and_close(*args):
    """`accept` from a thread of its own, whose connection would otherwise outlive the test."""
    try:
        accept(*args)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_commit_wakes_the_listening_relay_at_once_and_a_lone_single_goes_out_alone(admin, ada, broker, monkeypatch):
    # Polling alone would take a minute: only the NOTIFY of the commit can wake it in time.
    monkeypatch.setattr(relay, "LISTEN_POLL_SECONDS", 60)
    with running_relay(stopping_within=70):
        time.sleep(0.5)  # listening
        started = time.monotonic()
        [message] = accept(admin, ["email"])
        assert wait_for(lambda: broker.exists("email:2"), 5)
        latency = time.monotonic() - started
        [task] = tasks_in(broker, "email:2")
        # Stop the relay now, not after its minute-long wait: one more commit wakes it.
        threading.Timer(0.2, accept_and_close, [admin, ["email"]]).start()
    assert latency < 1.0
    assert task["task"] == SEND_MESSAGE_TASK
    assert task["args"] == [str(message.id)]


def notifies(queries) -> bool:
    return any(queue.OUTBOX_CHANNEL in query["sql"] for query in queries)


@pytest.mark.django_db(transaction=True)
def test_a_busy_relay_looks_without_being_woken_and_tells_the_writers(admin, ada, broker, monkeypatch):
    """After a round that took rows, the relay takes its next rounds without waiting for a
    wake-up, for queue.RELAY_POLLING_SECONDS, and says so in Redis: a send committed meanwhile
    sends no NOTIFY (a second transaction per send) and is published at once all the same."""
    monkeypatch.setattr(relay, "LISTEN_POLL_SECONDS", 60)  # only a wake-up or the polling in time
    polling = alertflow_redis.client()
    with running_relay(stopping_within=70):
        time.sleep(0.5)  # listening
        with CaptureQueriesContext(connection) as first:
            accept(admin, ["email", "sms"])  # a round of two rows: the API is busy
        assert wait_for(lambda: polling.pttl(queue.RELAY_POLLING_KEY) > 0, 5)
        time.sleep(queue.RELAY_POLLING_READ_SECONDS)  # this process's last reading is stale
        started = time.monotonic()
        with CaptureQueriesContext(connection) as meanwhile:
            [message] = accept(admin, ["email"])
        assert wait_for(lambda: [str(message.id)] in [t["args"] for t in tasks_in(broker, "email:2")], 5)
        latency = time.monotonic() - started
        # Once the polling ends, a commit wakes the relay again (and stops it now, not in a minute).
        assert wait_for(lambda: polling.pttl(queue.RELAY_POLLING_KEY) < 0, 5)
        time.sleep(2 * queue.RELAY_POLLING_READ_SECONDS)
        with CaptureQueriesContext(connection) as after:
            accept(admin, ["email"])
    assert notifies(first)
    assert not notifies(meanwhile)
    assert latency < 1.0
    assert notifies(after)


@pytest.mark.django_db
def test_a_writer_wakes_the_relay_unless_the_polling_key_is_alive_and_readable(settings):
    assert not queue.RelayPolling().covers_now()  # no relay said it polls

    queue.RelayPolling.announce()
    assert queue.RelayPolling().covers_now()

    alertflow_redis.client().pexpire(queue.RELAY_POLLING_KEY, 30)  # almost over: less than the margin
    assert not queue.RelayPolling().covers_now()

    queue.RelayPolling.announce()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert not queue.RelayPolling().covers_now()


def test_a_relay_that_cannot_tell_redis_keeps_waiting_to_be_woken(settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    assert relay.announce_polling(0.0) == 0.0
    assert relay.announce_polling(0.0) == 0.0  # backed off: not tried again, not logged again

    warnings = [r.getMessage() for r in caplog.records if r.name == "alertflow.redis"]
    assert warnings == [
        "The relay's polling announcement: Redis unavailable (announcing that the relay polls); "
        "writers wake the relay through PostgreSQL"
    ]


# A relay in miniature, on the test database: it publishes the outbox's rows, then stops before
# its transaction commits (the rows' DELETE) until it is killed.
KILLED_RELAY = """
import sys, time
import django
django.setup()
from django.conf import settings
settings.DATABASES["default"]["NAME"] = sys.argv[1]
from django.db import connection
from notifications import queue
publish = queue._publish

def publish_then_hang(tasks):
    publish(tasks)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        print(cursor.fetchone()[0], flush=True)
    print("published, not committed", flush=True)
    time.sleep(120)

queue._publish = publish_then_hang
queue.relay_once()
"""


@pytest.mark.django_db(transaction=True)
def test_a_relay_killed_between_publish_and_commit_publishes_again_and_the_message_is_sent_once(
    admin, tenant, ada, smtp_server, broker
):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"])
    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_RELAY, connection.settings_dict["NAME"]],
        cwd=settings.BASE_DIR,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        backend = int(killed.stdout.readline())
        assert killed.stdout.readline().strip() == "published, not committed"
    finally:
        os.kill(killed.pid, signal.SIGKILL)  # no handler, no rollback by the process itself
        killed.wait()
    # PostgreSQL rolls the dead relay's transaction back once it sees the connection closed,
    # a moment after the process died: until then its row is locked, and skipped.
    assert wait_for(lambda: not session_alive(backend), 10)

    assert len(tasks_in(broker, "email:2")) == 1
    assert Outbox.objects.count() == 1  # its DELETE died with it
    assert queue.relay_all() == 1
    tasks = tasks_in(broker, "email:2")
    assert [t["args"] for t in tasks] == [[str(message.id)], [str(message.id)]]

    # Both copies reach a worker: the claim lets one send.
    assert sum(pipeline.deliver(ids_of(t)) for t in tasks) == 1
    assert len(smtp_server.messages) == 1
    assert Message.objects.get(pk=message.pk).status == Message.Status.SENT


def session_alive(backend_pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend_pid])
        return cursor.fetchone() is not None


@pytest.mark.django_db(transaction=True)
def test_two_relays_at_once_publish_each_row_once(admin, tenant, broker):
    for recipient in [RecipientFactory(tenant=tenant, email=f"r{i}@example.com") for i in range(30)]:
        accept(admin, ["email"], recipient=recipient.external_id)
    relayed = []

    def one_relay():
        try:
            relayed.append(queue.relay_once(limit=20).rows)
        finally:
            connection.close()

    relays = [threading.Thread(target=one_relay) for _ in range(2)]
    for thread in relays:
        thread.start()
    for thread in relays:
        thread.join(10)
    relayed.append(queue.relay_all())

    assert sum(relayed) == 30
    published = [message_id for task in tasks_in(broker, "email:2") for message_id in ids_of(task)]
    assert len(published) == len(set(published)) == 30


@pytest.mark.sqlite
@pytest.mark.django_db
def test_singles_of_several_requests_in_one_task_carry_every_request_id(admin, tenant, broker):
    for n, request_id in enumerate(["req-a", "req-b", "req-a"]):
        recipient = RecipientFactory(tenant=tenant, email=f"r{n}@example.com")
        body = {"recipient": recipient.external_id, "channels": ["email"], "content": CONTENT}
        response = admin.post("/api/v1/notifications", body, format="json", HTTP_X_REQUEST_ID=request_id)
        assert response.status_code == 202
    queue.relay_all()

    [task] = tasks_in(broker, "email:2")
    assert len(ids_of(task)) == 3
    assert task["headers"][REQUEST_ID_HEADER] == "req-a,req-b"


@pytest.mark.sqlite
@pytest.mark.django_db
def test_singles_wait_in_the_outbox_while_workers_are_busy_and_then_go_out_together(admin, tenant, broker):
    recipients = [RecipientFactory(tenant=tenant, email=f"r{i}@example.com") for i in range(8)]
    for recipient in recipients[: queue.QUEUE_AHEAD]:
        accept(admin, ["email"], recipient=recipient.external_id)
        assert queue.relay_once().rows == 1  # an idle system: each goes out alone, at once
    assert len(tasks_in(broker, "email:2")) == queue.QUEUE_AHEAD  # every worker busy

    later = [str(accept(admin, ["email"], recipient=r.external_id)[0].id) for r in recipients[queue.QUEUE_AHEAD :]]
    [critical] = accept(admin, ["email"], recipient=recipients[0].external_id, priority="critical")
    relayed = queue.relay_once()

    # The critical one's list is empty: it goes out at once. The normal ones would only queue up
    # behind the tasks waiting: they wait in the outbox instead.
    assert (relayed.rows, relayed.held) == (1, {("email", 2)})
    assert ids_of(tasks_in(broker, "email")[0]) == [str(critical.id)]
    assert len(tasks_in(broker, "email:2")) == queue.QUEUE_AHEAD

    broker.rpop("email:2")  # a worker takes one
    relayed = queue.relay_once()
    assert (relayed.rows, relayed.held) == (len(later), frozenset())
    assert ids_of(tasks_in(broker, "email:2")[-1]) == later  # one task for all of them


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_drains_a_burst_of_singles_in_batches(admin, tenant, smtp_server, broker):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    recipients = [RecipientFactory(tenant=tenant, email=f"r{i}@example.com") for i in range(40)]
    with running_relay(), running_worker():
        messages = [accept(admin, ["email"], recipient=r.external_id)[0] for r in recipients]
        assert wait_for(lambda: len(smtp_server.messages) == 40, 30)
    assert Message.objects.filter(pk__in=[m.pk for m in messages], status="sent").count() == 40
    assert Outbox.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_singles_held_for_a_busy_list_do_not_keep_the_relay_from_a_full_outbox(broker, settings):
    # Held for the whole test: on a loaded box the three full rounds below took longer than the
    # default cap (1 s), which let the single out too, and the count never stopped at 1.
    settings.ALERTFLOW_RELAY_HOLD_MAX_SECONDS = 60
    # Every worker of the email queue is busy (or down): its normal singles wait in the outbox.
    broker.lpush("email:2", *["a task ahead"] * queue.QUEUE_AHEAD)
    held = Outbox.objects.create(
        task=SEND_MESSAGE_TASK, queue="email", step=2, args=["held"], queued_at=time.time(), request_id=""
    )
    # More rows for other lists than one round takes (say, after a broker outage); no commit
    # comes after them to wake the relay, nor does the email list get shorter.
    others = 3 * queue.RELAY_ROWS
    Outbox.objects.bulk_create(
        Outbox(task=SEND_BATCH_TASK, queue="sms", step=3, args=[f"m{i}"], queued_at=time.time(), request_id="")
        for i in range(others)
    )
    with running_relay():
        # A full round means more rows wait: the relay takes them at once, held singles or not.
        assert wait_for(lambda: Outbox.objects.count() == 1, 10), f"{Outbox.objects.count() - 1} rows left unpublished"
    assert list(Outbox.objects.values_list("pk", flat=True)) == [held.pk]
    assert len([i for task in tasks_in(broker, "sms:3") for i in ids_of(task)]) == others


@pytest.mark.django_db(transaction=True)
def test_rows_whose_notification_was_lost_are_found_by_the_poll_while_singles_are_held(broker, monkeypatch):
    monkeypatch.setattr(relay, "LISTEN_POLL_SECONDS", 0.5)
    broker.lpush("email:2", *["a task ahead"] * queue.QUEUE_AHEAD)  # the email workers are busy (or down)
    Outbox.objects.create(task=SEND_MESSAGE_TASK, queue="email", step=2, args=["held"], queued_at=0, request_id="")
    with running_relay():
        time.sleep(1.0)  # the relay has held the single back and waits for room in its list
        # A row whose wake-up never came (the writer's connection broke right after its commit).
        lost = Outbox.objects.create(task=SEND_BATCH_TASK, queue="sms", step=3, args=["m"], queued_at=0, request_id="")
        # The poll, the safety net for exactly this, finds it.
        assert wait_for(lambda: not Outbox.objects.filter(pk=lost.pk).exists(), 5)
    assert [ids_of(task) for task in tasks_in(broker, "sms:3")] == [["m"]]


# Random per message: the task id (also root_id and correlation_id) and kombu's delivery tag.
PER_MESSAGE = (
    ("headers", "id"),
    ("headers", "root_id"),
    ("properties", "correlation_id"),
    ("properties", "delivery_tag"),
)


def popped(broker, name: str) -> dict:
    """The one message waiting in a Redis list, taken off it, its per-message ids set aside."""
    assert broker.llen(name) == 1, name
    message = json.loads(broker.rpop(name))
    ids = {key: message[part].pop(key) for part, key in PER_MESSAGE}
    return {"message": message, "ids": ids}


@pytest.fixture
def no_request_id():
    """The relay's process serves no request: send_task's publish signal finds no request id to add."""
    token = request_id_var.set("")
    yield
    request_id_var.reset(token)


@pytest.mark.sqlite
def test_the_relay_publishes_the_message_send_task_would(broker, no_request_id):
    tasks = [
        queue.Task(SEND_MESSAGE_TASK, ["m1"], "email", 2, 1733300000.25, ("req-a",)),
        queue.Task(SEND_BATCH_TASK, [[f"m{i}" for i in range(100)]], "email", 1, 1733300000.5, ("req-a", "req-b")),
        queue.Task(SEND_MESSAGE_TASK, ["m2"], "sms", 0, 1733300001.0, ()),  # critical: the queue's own list
        queue.Task("notifications.fan_out", ["n1", None], "default", 2, 1733300002.0, ()),
    ]
    for task in tasks:
        # What the relay published before: Celery's send_task, through kombu's Redis transport.
        # No time limits: the relay's process does not import delivery's tasks, so send_task had
        # none to copy (this process has them); the worker applies the task's own (config/celery.py).
        with app.producer_or_acquire() as producer:
            app.send_task(
                task.name,
                args=task.args,
                queue=task.queue,
                priority=task.step,
                headers=task.headers(),
                producer=producer,
                time_limit=None,
                soft_time_limit=None,
            )
        name = f"{task.queue}:{task.step}" if task.step else task.queue
        by_celery = popped(broker, name)
        queue._publish([task])
        by_relay = popped(broker, name)

        # Headers, properties (priority, routing, body encoding), the body itself: all the same.
        assert by_relay["message"] == by_celery["message"]
        # A fresh task id per message, the same in the three places Celery puts it (the worker's
        # request id; nothing in AlertFlow keys on it: the claim and the sweeper use message ids
        # and QUEUED_HEADER), and a delivery tag of its own (kombu's unacked hash is keyed by it).
        for ids in (by_celery["ids"], by_relay["ids"]):
            assert ids["id"] == ids["root_id"] == ids["correlation_id"]
            assert len(ids["id"]) == len(ids["delivery_tag"]) == 36 and ids["id"] != ids["delivery_tag"]
        assert by_relay["ids"]["id"] != by_celery["ids"]["id"]


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_what_the_relay_publishes_with_its_headers(admin, tenant, ada, smtp_server, broker):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    response = admin.post(
        "/api/v1/notifications",
        {"recipient": "ada", "channels": ["email"], "content": CONTENT},
        format="json",
        HTTP_X_REQUEST_ID="req-worker",
    )
    assert response.status_code == 202
    assert queue.relay_all() == 1
    [task] = tasks_in(broker, "email:2")
    seen = []

    def record(task_id=None, task=None, **kwargs):
        seen.append((task_id, task.name, request_id_of(task.request)))

    task_prerun.connect(record, weak=False)
    try:
        with running_worker():
            assert wait_for(lambda: len(smtp_server.messages) == 1, 15)
    finally:
        task_prerun.disconnect(record)
    assert seen == [(task["headers"]["id"], SEND_MESSAGE_TASK, "req-worker")]
    assert Message.objects.get(notification_id=response.json()["id"]).status == Message.Status.SENT


def newest_ids(broker, name: str) -> list[str]:
    """The message ids of the task last pushed onto a list (whatever else waits in it)."""
    envelope = json.loads(broker.lindex(name, 0))
    return ids_of({"task": envelope["headers"]["task"], "args": json.loads(base64.b64decode(envelope["body"]))[0]})


@pytest.mark.sqlite
@pytest.mark.django_db
def test_singles_held_for_a_busy_list_go_out_together_once_one_was_held_the_cap(broker, settings):
    settings.ALERTFLOW_RELAY_HOLD_MAX_SECONDS = 1
    # A critical bulk's batches keep the list high singles share (priority_step) busy, for minutes.
    broker.lpush("email:1", *["a batch ahead"] * queue.QUEUE_AHEAD)
    broker.lpush("email:2", *["a task ahead"] * queue.QUEUE_AHEAD)
    now = timezone.now()
    single = {"task": SEND_MESSAGE_TASK, "queue": "email", "queued_at": 0, "request_id": ""}
    Outbox.objects.create(**single, step=1, args=["held 1.5 s"], created=now - timedelta(seconds=1.5))
    Outbox.objects.create(**single, step=1, args=["held 0.2 s"], created=now - timedelta(seconds=0.2))
    normal = Outbox.objects.create(**single, step=2, args=["normal, 0.5 s"], created=now - timedelta(seconds=0.5))

    relayed = queue.relay_once()

    # One of its list's singles reached the cap: they all go out, in one task, behind the
    # batches already waiting. The normal single's list is busy too, but it may wait on.
    assert relayed.rows == 2
    assert newest_ids(broker, "email:1") == ["held 1.5 s", "held 0.2 s"]
    assert list(Outbox.objects.values_list("pk", flat=True)) == [normal.pk]
    assert relayed.held == {("email", 2)}
    assert relayed.held_until == pytest.approx(normal.created.timestamp() + 1)


@pytest.mark.django_db(transaction=True)
def test_the_relay_sends_a_single_held_behind_a_long_bulk_once_it_reaches_the_cap(broker, settings, monkeypatch):
    settings.ALERTFLOW_RELAY_HOLD_MAX_SECONDS = 0.5
    # Its 1 s poll would not release the single (the list stays busy): only the cap does.
    monkeypatch.setattr(relay, "LISTEN_POLL_SECONDS", 3)
    broker.lpush("email:1", *["a batch ahead"] * 50)  # no worker takes any during the test
    held = Outbox.objects.create(
        task=SEND_MESSAGE_TASK, queue="email", step=1, args=["held"], queued_at=time.time(), request_id=""
    )
    with running_relay():
        assert wait_for(lambda: not Outbox.objects.filter(pk=held.pk).exists(), 2.5), "still held behind the bulk"
    assert newest_ids(broker, "email:1") == ["held"]
    assert broker.llen("email:1") == 51
