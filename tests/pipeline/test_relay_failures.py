"""The outbox relay when the broker fails under it (notifications/relay.py, queue.py): a Redis that
stops answering, and a Redis that goes away while singles wait for room. It times out, backs off
and tries again; it never exits, and never keeps rows locked."""

import os
import subprocess
import sys
import threading
import time

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection, transaction

from alertflow.queues import SEND_BATCH_TASK, SEND_MESSAGE_TASK
from notifications import queue, relay
from notifications.models import Outbox

from .conftest import running_relay
from .test_outbox import ids_of, tasks_in, wait_for


def outbox_row(task=SEND_BATCH_TASK, queue_name="sms", step=3, args=("m",)) -> Outbox:
    return Outbox.objects.create(
        task=task, queue=queue_name, step=step, args=list(args), queued_at=time.time(), request_id=""
    )


@pytest.mark.django_db(transaction=True)
def test_a_publish_to_a_redis_that_never_answers_times_out_and_leaves_its_rows_unlocked(own_broker, monkeypatch):
    monkeypatch.setattr(queue, "BROKER_TIMEOUT_SECONDS", 0.5)
    outbox_row(args=["first"])
    assert queue.relay_all() == 1  # connected, published
    row = outbox_row(args=["second"])
    own_broker.freeze()  # accepts, never answers (redis-py's default: wait forever)
    failures = []

    def relay_once():
        try:
            queue.relay_once(hold_back=False)  # takes and locks the row, then publishes
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    publishing = threading.Thread(target=relay_once, daemon=True)
    try:
        publishing.start()
        publishing.join(10)
        assert not publishing.is_alive(), "the publish still waits for the frozen Redis, its rows locked"
    finally:
        own_broker.thaw()
    assert [type(exc) for exc in failures] == [redis.TimeoutError]
    # Rolled back: the row is there, and nobody holds it (another relay could take it now).
    with transaction.atomic():
        assert [r.pk for r in Outbox.objects.select_for_update(nowait=True)] == [row.pk]
    assert queue.relay_all() == 1
    # The push the frozen Redis read before it froze ran when it thawed: that copy and the
    # republished one both reach a worker, and the claim lets one send (as after a killed relay).
    published = [ids_of(task) for task in tasks_in(own_broker.client, "sms:3")]
    assert published[0] == ["first"]
    assert published[1:] in ([["second"]], [["second"], ["second"]])


@pytest.mark.django_db(transaction=True)
def test_the_relay_waiting_for_room_outlives_a_redis_outage_and_then_sends_the_held_single(
    own_broker, settings, monkeypatch
):
    settings.ALERTFLOW_RELAY_HOLD_MAX_SECONDS = 600  # only room in the list releases it
    monkeypatch.setattr(relay, "RETRY_FIRST_SECONDS", 0.1)
    monkeypatch.setattr(relay, "RETRY_MAX_SECONDS", 0.2)
    own_broker.client.lpush("email:2", *["a task ahead"] * queue.QUEUE_AHEAD)  # every email worker busy
    held = outbox_row(task=SEND_MESSAGE_TASK, queue_name="email", step=2, args=["held"])
    with running_relay():
        time.sleep(0.5)  # the single is held; the relay asks Redis every HELD_POLL_SECONDS for room
        assert Outbox.objects.filter(pk=held.pk).exists()
        own_broker.stop()
        time.sleep(1.0)  # its polls fail: it backs off and tries again, and does not exit
        own_broker.start()  # empty, as a Redis restarted without its data: room for the single
        assert wait_for(lambda: not Outbox.objects.filter(pk=held.pk).exists(), 10), "the held single was never sent"
    assert own_broker.client.llen("email:2") == 1


@pytest.mark.django_db(transaction=True)
def test_a_relay_backing_off_from_a_broker_outage_stops_at_once(own_broker, monkeypatch):
    """A stop (SIGTERM to `manage.py relay`) waited out the whole back-off, up to
    RETRY_MAX_SECONDS, before the relay looked at it again."""
    monkeypatch.setattr(relay, "RETRY_FIRST_SECONDS", 60)
    outbox_row(args=["waiting"])
    own_broker.stop()  # every round fails: the relay backs off
    failed = threading.Event()
    monkeypatch.setattr(relay.logger, "warning", lambda *args: failed.set())
    with running_relay(stopping_within=2):
        assert failed.wait(10), "the relay never tried the stopped broker"
    assert Outbox.objects.count() == 1  # still waiting for the broker


def settings_in_a_fresh_process(**env: str):
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=django_settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "-1", "one second"])
def test_a_hold_cap_no_timedelta_can_hold_is_refused_at_startup(value):
    """`inf` (as if to turn the cap off) started, and then every relay round with a busy list
    raised OverflowError: nothing was published at all, not even the rows no list held."""
    result = settings_in_a_fresh_process(ALERTFLOW_RELAY_HOLD_MAX_SECONDS=value)

    assert result.returncode != 0
    assert "ALERTFLOW_RELAY_HOLD_MAX_SECONDS must be a number of seconds from 0 to 86400" in result.stderr


@pytest.mark.parametrize("value", ["0", "2.5", "86400"])
def test_a_hold_cap_from_0_to_a_day_is_taken(value):
    assert settings_in_a_fresh_process(ALERTFLOW_RELAY_HOLD_MAX_SECONDS=value).returncode == 0
