"""The relay POSTs due deliveries signed as the README says, retries with backoff, logs every
attempt, disables an endpoint that keeps failing, replays, and never leaves the outbound guard."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from delivery.webhooks import relay
from delivery.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from notifications.models import Message
from tests.fakes.http import Reply

from .conftest import accept, readme_verifier, subscribe

pytestmark = pytest.mark.django_db


def delivered_message(admin) -> Message:
    """A message whose receipt says delivered: one `message.delivered` event (and completion)."""
    [sms] = accept(admin, ["sms"])
    Message.objects.filter(pk=sms.pk).update(status="sent")
    Message.objects.filter(pk=sms.pk).move("delivered", delivered=timezone.now())
    return sms


@pytest.fixture
def delivered_only(admin, webhook_receiver):
    body = subscribe(admin, webhook_receiver.endpoint, ["message.delivered"])
    return WebhookEndpoint.objects.get(pk=body["id"]), body["secret"]


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def test_a_delivery_is_signed_as_the_readme_verifies_it(admin, ada, delivered_only, webhook_receiver):
    _endpoint, secret = delivered_only
    delivered_message(admin)
    verify = readme_verifier()

    assert relay.relay_due() == 1

    [post] = webhook_receiver.posts()
    event = WebhookEvent.objects.get()
    assert post.headers["x-alertflow-event-id"] == str(event.id) == post.json()["id"]
    assert post.headers["content-type"] == "application/json"
    signature = post.headers["x-alertflow-signature"]
    assert verify(post.body, signature, secret)
    assert not verify(post.body + b" ", signature, secret)
    assert not verify(post.body, signature, "whsec_someone-else")
    stale = signature.replace(signature.split(",")[0], "t=1000000000")
    assert not verify(post.body, stale, secret)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    [attempt] = WebhookAttempt.objects.all()
    assert (attempt.status_code, attempt.response, attempt.error) == (200, '{"received": true}', "")


def test_a_failure_is_retried_with_backoff_and_the_same_event_id(admin, ada, delivered_only, webhook_receiver):
    webhook_receiver.fail(Reply(500, b"<html>\x00oops\n\n  upstream   down</html>"))
    delivered_message(admin)

    assert relay.relay_due() == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    # 10 s after the answer, +-25 % jitter (bounds that hold however slow the box is).
    started = WebhookAttempt.objects.get().started
    assert started + timedelta(seconds=7.5) <= delivery.next_attempt <= later(12.5)
    assert relay.relay_due() == 0  # not due yet

    assert relay.relay_due(now=later(13)) == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    first, second = webhook_receiver.posts()
    assert first.headers["x-alertflow-event-id"] == second.headers["x-alertflow-event-id"]
    assert first.body == second.body
    failed, succeeded = WebhookAttempt.objects.order_by("started")
    assert (failed.status_code, failed.error, failed.response) == (500, "HTTP 500", "<html> oops upstream down</html>")
    assert succeeded.status_code == 200


def test_the_backoff_grows_fivefold_to_six_hours():
    # Jittered by +-25 %: each delay within its bounds.
    for attempt, base in enumerate([10, 50, 250, 1250, 6250, 21600, 21600], start=1):
        for _ in range(20):
            assert base * 0.75 <= relay.retry_delay(attempt) <= base * 1.25


def test_a_redirect_is_a_failure_not_followed(admin, ada, delivered_only, webhook_receiver):
    webhook_receiver.fail(Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}))
    delivered_message(admin)

    relay.relay_due()

    assert len(webhook_receiver.posts()) == 1
    assert WebhookAttempt.objects.get().error == "HTTP 302"


def test_an_endpoint_that_keeps_failing_is_disabled_and_can_be_enabled_again(
    admin, ada, delivered_only, webhook_receiver, settings, django_capture_on_commit_callbacks
):
    settings.ALERTFLOW_WEBHOOK_MAX_ATTEMPTS = 2
    settings.ALERTFLOW_WEBHOOK_DISABLE_AFTER_FAILED_DELIVERIES = 2
    endpoint, _secret = delivered_only
    webhook_receiver.fail(Reply(503, b"busy"), times=4)
    with django_capture_on_commit_callbacks(execute=True):
        delivered_message(admin)
        delivered_message(admin)

        relay.relay_due()
        relay.relay_due(now=later(13))

    assert sorted(WebhookDelivery.objects.values_list("status", "attempts")) == [("failed", 2), ("failed", 2)]
    assert WebhookAttempt.objects.count() == 4
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "2 deliveries in a row failed every attempt" in endpoint.disabled_reason
    # Disabled: new events are not written for it, and the API says why.
    delivered_message(admin)
    assert WebhookDelivery.objects.count() == 2
    body = admin.get(f"/api/v1/webhooks/{endpoint.pk}").json()
    assert (body["enabled"], body["disabled_reason"]) == (False, endpoint.disabled_reason)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin.patch(f"/api/v1/webhooks/{endpoint.pk}", {"enabled": True}, format="json")
    assert (response.json()["enabled"], response.json()["disabled_reason"]) == (True, "")
    replayed = admin.post(f"/api/v1/webhooks/{endpoint.pk}/replay", {"status": "failed"}, format="json")
    assert replayed.status_code == 202 and replayed.json() == {"replayed": 2}
    assert relay.relay_due() == 2
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    endpoint.refresh_from_db()
    assert (endpoint.failed_deliveries, endpoint.failing_since) == (0, None)


def test_an_endpoint_failing_for_the_whole_window_is_disabled(admin, ada, delivered_only, webhook_receiver, settings):
    settings.ALERTFLOW_WEBHOOK_DISABLE_AFTER_SECONDS = 3600
    endpoint, _secret = delivered_only
    webhook_receiver.fail(Reply(500), times=10)
    delivered_message(admin)
    relay.relay_due()
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).enabled  # failing, not for long yet
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=later(-3601))

    relay.relay_due(now=later(13))

    endpoint.refresh_from_db()
    assert not endpoint.enabled and "every attempt failed for 1 hours" in endpoint.disabled_reason


def test_a_delivery_is_replayed_with_its_event_id(admin, ada, delivered_only, webhook_receiver):
    endpoint, _secret = delivered_only
    delivered_message(admin)
    relay.relay_due()
    delivery = WebhookDelivery.objects.get()

    pending = admin.post(f"/api/v1/webhooks/{endpoint.pk}/deliveries/{delivery.pk}/replay")
    assert pending.status_code == 202 and pending.json()["status"] == "pending"
    again = admin.post(f"/api/v1/webhooks/{endpoint.pk}/deliveries/{delivery.pk}/replay")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_pending")
    relay.relay_due()

    first, second = webhook_receiver.posts()
    assert first.headers["x-alertflow-event-id"] == second.headers["x-alertflow-event-id"]
    assert WebhookDelivery.objects.get().status == "delivered"


def test_during_the_overlap_both_secrets_sign_and_only_the_new_one_after(admin, ada, delivered_only, webhook_receiver):
    endpoint, old = delivered_only
    verify = readme_verifier()
    rotated = admin.post(f"/api/v1/webhooks/{endpoint.pk}/rotate-secret", {"overlap_seconds": 3600}, format="json")
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_")
    delivered_message(admin)
    relay.relay_due()

    [during] = webhook_receiver.posts()
    assert during.headers["x-alertflow-signature"].count("v1=") == 2
    assert verify(during.body, during.headers["x-alertflow-signature"], new)
    assert verify(during.body, during.headers["x-alertflow-signature"], old)

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_expires=later(-1))  # the overlap ends
    delivered_message(admin)
    relay.relay_due()

    after = webhook_receiver.posts()[-1]
    assert after.headers["x-alertflow-signature"].count("v1=") == 1
    assert verify(after.body, after.headers["x-alertflow-signature"], new)
    assert not verify(after.body, after.headers["x-alertflow-signature"], old)
    assert json.loads(after.body)["type"] == "message.delivered"


def test_the_outbound_guard_refuses_at_send_a_url_that_now_points_inside(
    admin, ada, delivered_only, webhook_receiver, settings
):
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = False  # saved while allowed; refused now
    delivered_message(admin)

    relay.relay_due()

    assert webhook_receiver.posts() == []
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None and attempt.error.startswith("address_not_allowed: 127.0.0.1")
    assert WebhookDelivery.objects.get().status == "pending"  # retried later, maybe disabled


def test_a_slow_endpoint_times_out(admin, ada, delivered_only, webhook_receiver, settings):
    settings.ALERTFLOW_WEBHOOK_TIMEOUT_SECONDS = 1
    webhook_receiver.hold()
    delivered_message(admin)

    relay.relay_due()

    assert WebhookAttempt.objects.get().error == "timeout after 1s"
    assert WebhookDelivery.objects.get().status == "pending"


def test_a_ping_reaches_the_endpoint(admin, ada, delivered_only, webhook_receiver):
    endpoint, secret = delivered_only
    response = admin.post(f"/api/v1/webhooks/{endpoint.pk}/test")
    assert response.status_code == 202 and response.json()["event_type"] == "webhook.ping"

    relay.relay_due()

    [ping] = webhook_receiver.posts()
    assert ping.json()["type"] == "webhook.ping" and ping.json()["data"] == {"endpoint_id": str(endpoint.pk)}
    assert readme_verifier()(ping.body, ping.headers["x-alertflow-signature"], secret)


def test_old_events_are_pruned_but_never_a_pending_one(admin, ada, delivered_only, webhook_receiver, settings):
    settings.ALERTFLOW_WEBHOOK_RETENTION_DAYS = 30
    delivered_message(admin)
    delivered_message(admin)
    relay.relay_due()
    delivered_message(admin)  # pending: never sent yet
    old, also_old, pending = WebhookEvent.objects.order_by("created")
    WebhookEvent.objects.filter(pk__in=[old.pk, pending.pk]).update(created=later(-31 * 86400))
    WebhookEvent.objects.filter(pk=also_old.pk).update(created=later(-29 * 86400))

    assert relay.prune() == 1

    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {also_old.pk, pending.pk}
    assert not WebhookDelivery.objects.filter(event_id=old.pk).exists()
    assert WebhookAttempt.objects.count() == 1  # the attempt of the kept delivered one


def test_an_endpoint_deleted_while_its_post_was_in_flight_ends_the_attempt_quietly(
    admin, ada, delivered_only, webhook_receiver
):
    from django.db import connection

    endpoint, _secret = delivered_only
    delivered_message(admin)
    delivery = relay.claim()
    # The tenant deletes the endpoint (its deliveries and attempts go with it) while the relay
    # waits for the endpoint's answer.
    assert admin.delete(f"/api/v1/webhooks/{endpoint.pk}").status_code == 204

    relay.send(delivery)

    # Nothing left pointing at the deleted delivery (a deferred foreign key would fail the
    # relay's commit, and its whole run with it).
    connection.check_constraints()
    assert not WebhookAttempt.objects.exists() and not WebhookDelivery.objects.exists()
