"""A fan-out step killed with SIGKILL in the middle of a chunk: nothing of that chunk is
committed, and the next step resumes from the checkpoint, writing each recipient once."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from notifications import services
from notifications.models import Message, Notification
from tests.factories import RecipientFactory, TopicFactory

from .conftest import EMAIL

# A worker in miniature, on the test database: one step, then a second one that stops inside its
# transaction (after writing its chunk and the checkpoint, before the commit) until it is killed.
WORKER = """
import sys, time
import django
django.setup()
from django.conf import settings
settings.DATABASES["default"]["NAME"] = sys.argv[1]
from notifications import queue, services
services.FAN_OUT_CHUNK = 2
services.fan_out_step(sys.argv[2])

def hang(messages):
    print("chunk written, not committed", flush=True)
    time.sleep(120)

queue.enqueue_on_commit = hang
services.fan_out_step(sys.argv[2], after=int(sys.argv[3]))
"""


@pytest.mark.django_db(transaction=True)
def test_a_fan_out_killed_mid_chunk_resumes_from_its_checkpoint(admin, tenant, monkeypatch):
    topic = TopicFactory(tenant=tenant, key="news")
    subscribers = [RecipientFactory(tenant=tenant) for _ in range(5)]
    admin.post(f"/api/v1/topics/{topic.key}/subscribers", {"add": [r.external_id for r in subscribers]}, format="json")
    response = admin.post(
        "/api/v1/notifications", {"topic": "news", "channels": ["email"], "content": EMAIL}, format="json"
    )
    notification_id = response.json()["id"]
    first_checkpoint = sorted(r.pk for r in subscribers)[1]  # after the first chunk of two

    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, connection.settings_dict["NAME"], notification_id, str(first_checkpoint)],
        cwd=settings.BASE_DIR,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout.readline().strip() == "chunk written, not committed"
    finally:
        worker.kill()  # SIGKILL: no handler, no rollback by the process itself
        worker.wait()

    notification = Notification.objects.get(pk=notification_id)
    assert notification.fanned_out == first_checkpoint
    assert Message.objects.filter(notification=notification).count() == 2

    monkeypatch.setattr(services, "FAN_OUT_CHUNK", 2)
    assert services.fan_out(notification_id) == 3
    written = list(Message.objects.filter(notification=notification).values_list("recipient_id", flat=True))
    assert sorted(written) == sorted(r.pk for r in subscribers)
