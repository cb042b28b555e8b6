"""No event is lost when the worker dies between the status change and the POST: the event is
committed with the status, and a relay killed with SIGKILL in the middle of its POST leaves the
delivery due again once its lease runs out (a real subprocess, killed while the receiver holds
the request open)."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from delivery.webhooks import relay
from delivery.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from notifications.models import Message

from .conftest import accept, subscribe

# A relay in miniature, on the test database, allowed to reach the receiver on 127.0.0.1 in
# plain http.
RELAY = """
import sys
import django
django.setup()
from django.conf import settings
settings.DATABASES["default"]["NAME"] = sys.argv[1]
settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = True
settings.ALERTFLOW_WEBHOOK_ALLOW_HTTP = True
from delivery.webhooks import relay
relay.relay_due()
"""


@pytest.mark.django_db(transaction=True)
def test_a_relay_killed_mid_post_loses_no_event(admin, ada, webhook_receiver):
    subscribe(admin, webhook_receiver.endpoint, ["message.delivered"])
    [sms] = accept(admin, ["sms"])
    Message.objects.filter(pk=sms.pk).update(status="sent")

    Message.objects.filter(pk=sms.pk).move("delivered", delivered=timezone.now())  # committed: no transaction here

    # Between the status change and any POST, the event is already durable and due.
    event = WebhookEvent.objects.get()
    assert WebhookDelivery.objects.get().next_attempt <= timezone.now()

    webhook_receiver.hold()
    worker = subprocess.Popen(
        [sys.executable, "-c", RELAY, connection.settings_dict["NAME"]],
        cwd=settings.BASE_DIR,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert webhook_receiver.held.wait(timeout=60), "the relay never POSTed"
    finally:
        worker.kill()  # SIGKILL while the POST is in flight: no handler, no cleanup
        worker.wait()
    webhook_receiver.release()

    delivery = WebhookDelivery.objects.get()
    # Leased by the dead relay: not due now, not delivered, no attempt recorded.
    assert delivery.status == "pending" and delivery.attempts == 0
    assert delivery.next_attempt > timezone.now()
    assert not WebhookAttempt.objects.exists()
    assert relay.relay_due() == 0  # another relay leaves it alone while the lease holds

    after_lease = timezone.now() + timedelta(seconds=settings.ALERTFLOW_WEBHOOK_LEASE_SECONDS + 1)
    assert relay.relay_due(now=after_lease) == 1

    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    interrupted, resent = webhook_receiver.posts()
    assert interrupted.headers["x-alertflow-event-id"] == resent.headers["x-alertflow-event-id"] == str(event.id)
