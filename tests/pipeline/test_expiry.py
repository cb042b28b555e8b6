"""Nothing waits forever: a message not sent before `expires_at` becomes `expired`, listed and
replayable with the dead letters. `expires_in` comes from the send, else its category, else the
deployment's default for its priority."""

from datetime import timedelta

import pytest
from django.utils import timezone

from delivery import guards, pipeline, timers
from notifications import services
from notifications.models import Message, Notification
from tests.factories import CategoryFactory, RecipientFactory

from .conftest import CONTENT, accept, add_provider, smtp_config

pytestmark = pytest.mark.django_db


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


def expire(message, seconds_ago=1) -> None:
    Message.objects.filter(pk=message.pk).update(expires_at=timezone.now() - timedelta(seconds=seconds_ago))


def test_expires_in_on_a_send_gives_each_message_its_expiry(admin, ada):
    before = timezone.now()
    [message] = accept(admin, ["email"], expires_in=90)

    assert Notification.objects.get(pk=message.notification_id).expires_in == 90
    assert before + timedelta(seconds=90) <= reload(message).expires_at <= timezone.now() + timedelta(seconds=90)
    listed = admin.get(f"/api/v1/notifications/{message.notification_id}").json()
    assert listed["expires_in"] == 90
    assert listed["messages"][0]["expires_at"] is not None


def test_a_scheduled_send_expires_counting_from_its_send_time(admin, ada):
    send_at = timezone.now() + timedelta(hours=2)
    [message] = accept(admin, ["email"], send_at=send_at.isoformat(), expires_in=60)

    assert reload(message).expires_at == send_at + timedelta(seconds=60)


def test_rescheduling_moves_the_expiry_with_the_send_time(admin, ada):
    [message] = accept(admin, ["email"], send_at=(timezone.now() + timedelta(hours=1)).isoformat(), expires_in=60)
    later = timezone.now() + timedelta(days=2)

    response = admin.patch(
        f"/api/v1/notifications/{message.notification_id}", {"send_at": later.isoformat()}, format="json"
    )

    assert response.status_code == 200
    assert reload(message).expires_at == later + timedelta(seconds=60)
    assert timers.enqueue_due(now=timezone.now() + timedelta(hours=3)) == 0
    assert reload(message).status == "scheduled"  # not expired at the old send time


def test_expiry_defaults_to_the_category_then_the_deployment_by_priority(admin, tenant, ada, settings):
    settings.ALERTFLOW_EXPIRES_IN = {"critical": 600, "high": 3600, "normal": 7200, "low": 9000}
    CategoryFactory(tenant=tenant, key="digest", channels=["email"], expires_in=120)
    CategoryFactory(tenant=tenant, key="otp", channels=["email"], critical=True, priority="high")

    def expires_in(**extra) -> int:
        [message] = accept(admin, ["email"], **extra)
        return Notification.objects.get(pk=message.notification_id).expires_in

    assert expires_in(category="digest") == 120
    assert expires_in(category="otp") == 600  # a critical category is short-lived
    assert expires_in() == 7200
    assert expires_in(priority="low") == 9000
    assert expires_in(category="digest", expires_in=30) == 30


@pytest.mark.parametrize("expires_in", [0, -5, "soon", 31 * 24 * 3600, 1.5])
def test_a_bad_expires_in_is_400(admin, ada, expires_in):
    body = {"recipient": "ada", "channels": ["email"], "content": CONTENT, "expires_in": expires_in}

    response = admin.post("/api/v1/notifications", body, format="json")

    assert response.status_code == 400
    assert "expires_in" in response.json()["error"]["details"]["fields"]
    assert not Notification.objects.exists()


def test_a_bulk_send_gives_its_fanned_out_messages_the_expiry(admin, tenant):
    RecipientFactory(tenant=tenant, external_id="u1", email="u1@example.com")
    body = {"recipients": ["u1"], "channels": ["email"], "content": CONTENT, "expires_in": 45}

    notification_id = admin.post("/api/v1/notifications", body, format="json").json()["id"]
    services.fan_out(notification_id)

    [message] = Message.objects.filter(notification_id=notification_id)
    notification = Notification.objects.get(pk=notification_id)
    assert message.expires_at == notification.created + timedelta(seconds=45)


def test_a_message_past_its_expiry_is_never_sent(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"], expires_in=60)
    expire(message)

    assert pipeline.deliver([message.id]) == 0

    message = reload(message)
    assert (message.status, message.reason, message.attempts) == ("expired", "expired_in_queue", 0)
    assert smtp_server.messages == []


def test_the_due_poller_expires_waiting_messages_instead_of_queueing_them(admin, ada):
    scheduled = accept(admin, ["email"], send_at=(timezone.now() + timedelta(minutes=5)).isoformat())[0]
    retrying, queued = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    Message.objects.filter(pk=retrying.pk).update(status="retrying", next_attempt=timezone.now())
    for message in (scheduled, retrying, queued):
        expire(message)

    assert timers.enqueue_due(now=timezone.now() + timedelta(minutes=6)) == 0

    assert [(reload(m).status, reload(m).reason) for m in (scheduled, retrying, queued)] == [
        ("expired", "expired_while_scheduled"),
        ("expired", "expired_while_retrying"),
        ("expired", "expired_in_queue"),
    ]


def test_a_retry_that_would_come_after_the_expiry_expires_now(admin, tenant, ada, smtp_server, settings):
    settings.ALERTFLOW_RETRY_BASE_SECONDS = 600
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    smtp_server.reply_next("451 4.3.0 Try again later", times=10)
    [message] = accept(admin, ["email"], expires_in=5)

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.reason, message.next_attempt) == ("expired", "expired_while_retrying", None)
    assert message.error.startswith("unavailable: SMTP 451")  # why it never made it


def test_an_otp_waiting_on_open_breakers_expires_instead_of_cycling(admin, tenant, ada, smtp_server, settings):
    provider = add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    settings.ALERTFLOW_BREAKER_FAILURES = 1
    guards.record_failure(str(provider.id))  # every provider of the channel is down
    [message] = accept(admin, ["email"], priority="critical", expires_in=10)

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.reason) == ("expired", "expired_while_retrying")
    assert message.error.startswith("circuit_open")


def test_expired_messages_are_listed_and_replayed_with_a_fresh_expiry(
    admin, outsider, tenant, ada, smtp_server, django_capture_on_commit_callbacks
):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"], expires_in=60)
    expire(message)
    pipeline.deliver([message.id])

    listed = admin.get("/api/v1/messages?status=expired").json()["results"]
    assert [(m["id"], m["reason"]) for m in listed] == [(str(message.id), "expired_in_queue")]
    assert outsider.get("/api/v1/messages?status=expired").json()["results"] == []
    assert outsider.post(f"/api/v1/messages/{message.id}/retry").status_code == 404
    assert reload(message).status == "expired"

    with django_capture_on_commit_callbacks(execute=False):
        response = admin.post(f"/api/v1/messages/{message.id}/retry")

    assert response.status_code == 202
    message = reload(message)
    assert (message.status, message.attempts) == ("queued", 0)
    assert message.expires_at > timezone.now() + timedelta(seconds=55)
    assert pipeline.deliver([message.id]) == 1


def test_bulk_replay_takes_expired_messages_when_asked(admin, ada):
    failed, expired = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    Message.objects.filter(pk=failed.pk).update(status="failed")
    Message.objects.filter(pk=expired.pk).update(status="expired")

    assert admin.post("/api/v1/messages/retry", {}, format="json").json() == {"replayed": 1}
    assert reload(expired).status == "expired"
    assert admin.post("/api/v1/messages/retry", {"status": "expired"}, format="json").json() == {"replayed": 1}
    assert reload(expired).status == "queued"
    assert admin.post("/api/v1/messages/retry", {"status": "sent"}, format="json").status_code == 400
