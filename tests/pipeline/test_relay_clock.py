"""The relay's hold cap (ALERTFLOW_RELAY_HOLD_MAX_SECONDS) measures how long a single waited on
one clock, the database's: the relay's host and the hosts that wrote the rows may each be off."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from alertflow.queues import SEND_MESSAGE_TASK
from notifications import queue
from notifications.models import Outbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_list(broker, settings):
    """Normal singles' list of the email queue holds QUEUE_AHEAD tasks: its singles are held."""
    settings.ALERTFLOW_RELAY_HOLD_MAX_SECONDS = 1
    broker.lpush("email:2", *["a task ahead"] * queue.QUEUE_AHEAD)
    Outbox.objects.create(task=SEND_MESSAGE_TASK, queue="email", step=2, args=["new"], queued_at=0, request_id="")


def relay_host_clock(monkeypatch, ahead: float) -> None:
    real_now, real_time = timezone.now, time.time
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=ahead))
    monkeypatch.setattr(time, "time", lambda: real_time() + ahead)


@pytest.mark.parametrize("ahead", [10, -10], ids=["relay clock ahead", "relay clock behind"])
def test_a_single_just_written_is_held_for_the_cap_whatever_the_relay_hosts_clock(busy_list, monkeypatch, ahead):
    relay_host_clock(monkeypatch, ahead)
    before = time.time()

    relayed = queue.relay_once()

    # Held (not taken for 10 s old), and due out a cap from now on the relay's own clock (not
    # 11 s from now, which a relay behind the database would wait).
    assert (relayed.rows, relayed.held) == (0, {("email", 2)})
    assert before + 0.5 < relayed.held_until <= time.time() + 1
