"""Events are written to the outbox in the transaction of the status change that caused them,
for the tenants whose endpoints want them, and cost no query for the others."""

import pytest
from django.db import transaction
from django.utils import timezone

from delivery import state
from delivery.webhooks import events
from delivery.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from notifications import analytics, services, transitions
from notifications.models import Message
from tests.inbox.conftest import reader_client, send_inapp
from tests.pipeline.conftest import CONTENT

from .conftest import accept, subscribe

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def test_no_endpoint_means_no_event_and_no_query_per_move(admin, ada, django_assert_num_queries, monkeypatch):
    # The analytics aggregates are a listener of their own, which always writes (notifications/
    # analytics.py): this counts the webhooks' listener alone.
    monkeypatch.setattr(transitions, "_listeners", [f for f in transitions._listeners if f is not analytics.moved])
    first, second = accept(admin, ["email", "sms"])
    Message.objects.filter(pk=first.pk).move("cancelled")  # reads (and caches) "no endpoints"

    with django_assert_num_queries(1):  # the UPDATE ... RETURNING, nothing else
        Message.objects.filter(pk=second.pk).move("cancelled")

    assert Message.objects.filter(status="cancelled").count() == 2
    assert not WebhookEvent.objects.exists()


def test_a_receipt_writes_the_event_with_ids_and_statuses_never_content(admin, ada, tenant, endpoint):
    endpoint_row, _secret = endpoint
    [sms] = accept(admin, ["sms"])
    Message.objects.filter(pk=sms.pk).update(status="sent", provider_message_id="SM1")
    now = timezone.now()

    Message.objects.filter(pk=sms.pk).move("delivered", delivered=now, updated=now)

    # Its only message is final too: the endpoint, subscribed to everything, gets that as well.
    assert WebhookEvent.objects.filter(type="notification.completed").count() == 1
    [event] = WebhookEvent.objects.filter(type="message.delivered")
    assert event.type == "message.delivered" and event.tenant_id == tenant.pk
    assert event.payload == {
        "id": str(event.id),
        "type": "message.delivered",
        "created": event.created.isoformat(),
        "data": {
            "message_id": str(sms.id),
            "notification_id": str(sms.notification_id),
            "recipient": "ada",
            "channel": "sms",
            "status": "delivered",
            "reason": "",
            "timestamps": {"updated": now.isoformat(), "sent": None, "delivered": now.isoformat(), "read": None,
                           "failed": None},
        },
    }  # fmt: skip
    [delivery] = WebhookDelivery.objects.filter(event=event)
    assert (delivery.endpoint_id, delivery.status, delivery.event_type) == (endpoint_row.pk, "pending", event.type)
    assert "4711" not in str(event.payload)  # the rendered code of CONTENT never leaves


def test_a_status_change_rolled_back_leaves_no_event(admin, ada, endpoint):
    [sms] = accept(admin, ["sms"])
    Message.objects.filter(pk=sms.pk).update(status="sent")

    with pytest.raises(RuntimeError), transaction.atomic():
        Message.objects.filter(pk=sms.pk).move("delivered")
        # Written with the status, inside its transaction (and the notification's completion).
        assert WebhookEvent.objects.count() == 2
        raise RuntimeError("the request failed after the move")

    assert Message.objects.get(pk=sms.pk).status == "sent"
    assert not WebhookEvent.objects.exists() and not WebhookDelivery.objects.exists()


def test_only_the_subscribed_types_and_tenants_get_events(admin, ada, outsider, webhook_receiver):
    subscribe(admin, webhook_receiver.endpoint, ["message.failed"])
    subscribe(outsider, webhook_receiver.endpoint, ["message.delivered"])
    email, sms = accept(admin, ["email", "sms"])
    Message.objects.filter(pk__in=[email.pk, sms.pk]).update(status="sent")

    Message.objects.filter(pk=email.pk).move("delivered")  # nobody of this tenant wants it
    Message.objects.filter(pk=sms.pk).move("failed", reason="twilio_30003")

    [event] = WebhookEvent.objects.all()
    assert (event.type, event.payload["data"]["reason"]) == ("message.failed", "twilio_30003")


def test_the_batch_record_and_the_claim_write_sent_and_expired(admin, ada, endpoint):
    email, sms = accept(admin, ["email", "sms"])
    Message.objects.filter(pk=sms.pk).update(expires_at=timezone.now())

    lease = state.claim([email.pk, sms.pk])
    [claimed] = Message.objects.filter(pk__in=lease.ids)
    state.settle(claimed, state.Outcome(sent=True, provider="smtp", provider_message_id="m1"))
    state.record([claimed], [], lease)

    assert sorted(WebhookEvent.objects.values_list("type", "payload__data__channel")) == [
        ("message.expired", "sms"),
        ("message.sent", "email"),
        ("notification.completed", None),
    ]


def test_notification_completed_is_written_once_when_the_last_message_is_final(admin, ada, endpoint):
    email, sms = accept(admin, ["email", "sms"])
    Message.objects.filter(pk__in=[email.pk, sms.pk]).update(status="sending")

    Message.objects.filter(pk=email.pk).move("sent")
    assert not WebhookEvent.objects.filter(type="notification.completed").exists()
    Message.objects.filter(pk=sms.pk).move("failed", reason="permanent_failure")
    Message.objects.filter(pk=email.pk).move("delivered")  # final to final: not completed again

    [completed] = WebhookEvent.objects.filter(type="notification.completed")
    assert completed.payload["data"] == {
        "notification_id": str(email.notification_id),
        "status": "partially_failed",
        "counts": {"sent": 1, "failed": 1},
    }


def test_two_workers_finishing_together_still_complete_the_notification(
    admin, ada, endpoint, django_capture_on_commit_callbacks
):
    email, sms = accept(admin, ["email", "sms"])
    # What each of two concurrent transactions sees: the other's message still sending.
    Message.objects.filter(pk__in=[email.pk, sms.pk]).update(status="sending")
    with django_capture_on_commit_callbacks() as after_commit:
        Message.objects.filter(pk=email.pk).move("sent")
    Message.objects.filter(pk=sms.pk).update(status="sent")  # the other commits, unseen by the first check

    assert not WebhookEvent.objects.filter(type="notification.completed").exists()
    for callback in after_commit:
        callback()
    assert WebhookEvent.objects.filter(type="notification.completed").count() == 1


def test_a_new_endpoint_gets_events_once_its_creation_commits(
    admin, ada, webhook_receiver, django_capture_on_commit_callbacks
):
    email, sms = accept(admin, ["email", "sms"])
    Message.objects.filter(pk=email.pk).move("cancelled")  # caches "no endpoints"
    with django_capture_on_commit_callbacks(execute=True):
        subscribe(admin, webhook_receiver.endpoint, ["message.failed"])
    Message.objects.filter(pk=sms.pk).update(status="sending")

    Message.objects.filter(pk=sms.pk).move("failed")

    assert WebhookEvent.objects.filter(type="message.failed").count() == 1


def test_a_disabled_endpoint_gets_no_new_events(admin, ada, endpoint, django_capture_on_commit_callbacks):
    endpoint_row, _secret = endpoint
    with django_capture_on_commit_callbacks(execute=True):
        admin.patch(f"/api/v1/webhooks/{endpoint_row.pk}", {"enabled": False}, format="json")
    [sms] = accept(admin, ["sms"])
    Message.objects.filter(pk=sms.pk).update(status="sent")

    Message.objects.filter(pk=sms.pk).move("delivered")

    assert not WebhookEvent.objects.exists()
    assert WebhookEndpoint.objects.get(pk=endpoint_row.pk).disabled_reason == ""


def test_the_subscriptions_come_from_the_database_when_redis_is_down(admin, ada, endpoint, settings):
    [sms] = accept(admin, ["sms"])
    Message.objects.filter(pk=sms.pk).update(status="sent")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused

    Message.objects.filter(pk=sms.pk).move("delivered")

    assert WebhookEvent.objects.filter(type="message.delivered").count() == 1


def test_a_reload_racing_a_new_endpoint_is_not_kept(admin, ada, webhook_receiver, monkeypatch):
    # A process reads "no endpoints" just before a new endpoint commits, and stores what it read
    # after the endpoint's change was announced. It used to keep that for 30 s: the endpoint's
    # first events were never written.
    email, sms = accept(admin, ["email", "sms"])
    load = events._load

    def load_then_endpoint_created(tenant_id):
        stale = load(tenant_id)
        subscribe(admin, webhook_receiver.endpoint, ["message.failed"])  # bumps the version
        return stale

    monkeypatch.setattr(events, "_load", load_then_endpoint_created)
    Message.objects.filter(pk=email.pk).move("cancelled")  # reads "no endpoints", too late
    monkeypatch.setattr(events, "_load", load)
    Message.objects.filter(pk=sms.pk).update(status="sending")

    Message.objects.filter(pk=sms.pk).move("failed")

    assert WebhookEvent.objects.filter(type="message.failed").count() == 1


def test_reading_an_item_in_the_inbox_writes_message_read(admin, ada, webhook_receiver):
    subscribe(admin, webhook_receiver.endpoint, ["message.read"])
    message_id = send_inapp(admin)

    response = reader_client(ada).post(f"/api/v1/inbox/{message_id}/read")
    assert response.status_code == 200
    reader_client(ada).post(f"/api/v1/inbox/{message_id}/unread")
    reader_client(ada).post(f"/api/v1/inbox/{message_id}/read")  # read again: the status moved once

    [event] = WebhookEvent.objects.all()
    assert (event.type, event.payload["data"]["message_id"], event.payload["data"]["channel"]) == (
        "message.read",
        message_id,
        "inapp",
    )
    assert event.payload["data"]["timestamps"]["read"] is not None


def test_a_bulk_send_whose_messages_finished_before_its_fan_out_did_still_completes(admin, ada, endpoint):
    """The fan-out's last step (nothing left, the notification becomes `accepted`) may run after
    every message it wrote is final already: that step, not a message's move, completes it."""
    body = {"recipients": ["ada"], "channels": ["email", "sms"], "content": CONTENT}
    notification_id = admin.post("/api/v1/notifications", body, format="json").json()["id"]
    chunk = services.fan_out_chunk(notification_id)
    email, sms = Message.objects.filter(notification_id=notification_id).order_by("channel")
    Message.objects.filter(pk__in=[email.pk, sms.pk]).update(status="sending")
    Message.objects.filter(pk=email.pk).move("sent")
    Message.objects.filter(pk=sms.pk).move("failed", reason="permanent_failure")
    assert not WebhookEvent.objects.filter(type="notification.completed").exists()  # still fanning out

    assert services.fan_out_chunk(notification_id, after=chunk.cursor) is None  # nothing left: accepted

    [completed] = WebhookEvent.objects.filter(type="notification.completed")
    assert completed.payload["data"]["notification_id"] == notification_id
    assert completed.payload["data"]["counts"] == {"sent": 1, "failed": 1}


def test_a_bulk_send_whose_every_message_was_suppressed_completes_when_its_fan_out_ends(admin, ada, endpoint):
    admin.put("/api/v1/recipients/ada/preferences", {"channels": {"email": False}}, format="json")
    body = {"recipients": ["ada"], "channels": ["email"], "content": CONTENT}
    notification_id = admin.post("/api/v1/notifications", body, format="json").json()["id"]

    assert services.fan_out(notification_id) == 1

    [completed] = WebhookEvent.objects.filter(type="notification.completed")
    assert completed.payload["data"]["counts"] == {"suppressed": 1}


def test_a_new_suppression_writes_suppression_created_in_its_transaction(admin, webhook_receiver):
    subscribe(admin, webhook_receiver.endpoint, ["suppression.created"])

    response = admin.post("/api/v1/suppressions", {"channel": "email", "address": "Ada@Example.com"}, format="json")
    assert response.status_code == 201, response.content
    again = admin.post("/api/v1/suppressions", {"channel": "email", "address": "ada@example.com"}, format="json")
    assert again.status_code == 200  # already suppressed: the existing row, and no second event

    [event] = WebhookEvent.objects.all()
    assert event.type == "suppression.created"
    assert event.payload["data"] == {
        "suppression_id": response.json()["id"],
        "channel": "email",
        "address": "ada@example.com",
        "category": None,
        "reason": "manual",
        "created": event.payload["data"]["created"],
    }
    assert WebhookDelivery.objects.get().event_type == "suppression.created"


def test_a_suppression_rolled_back_leaves_no_event(admin, tenant, webhook_receiver):
    from preferences import suppressions

    subscribe(admin, webhook_receiver.endpoint, ["suppression.created"])

    with pytest.raises(RuntimeError), transaction.atomic():
        suppressions.suppress(tenant.pk, "sms", ["+14155552671"], "sms_stop")
        assert WebhookEvent.objects.count() == 1
        raise RuntimeError("the inbound request failed after the insert")

    assert not WebhookEvent.objects.exists()


def test_a_status_change_survives_the_cached_subscriptions_of_an_endpoint_deleted_meanwhile(
    admin, ada, endpoint, monkeypatch
):
    from django.db import connection

    endpoint_row, _secret = endpoint
    email, sms = accept(admin, ["email", "sms"])
    Message.objects.filter(pk__in=[email.pk, sms.pk]).update(status="sent")
    Message.objects.filter(pk=email.pk).move("delivered")
    # A worker or a receipt whose transaction read the subscriptions before the delete committed
    # still names the endpoint.
    read_before = events.subscriptions([endpoint_row.tenant_id])
    assert admin.delete(f"/api/v1/webhooks/{endpoint_row.pk}").status_code == 204
    monkeypatch.setattr(events, "subscriptions", lambda tenant_ids: read_before)

    Message.objects.filter(pk=sms.pk).move("failed", reason="twilio_30003")

    # The status change commits: no delivery points at the endpoint that is gone (a deferred
    # foreign key would fail the whole transaction, the status write with it).
    connection.check_constraints()
    assert Message.objects.get(pk=sms.pk).status == "failed"
    assert not WebhookDelivery.objects.filter(endpoint_id=endpoint_row.pk).exists()
