"""Delivery you can trust: Retry-After, breakers, rate limits, replay, cancel, reschedule."""

import base64
import json
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from delivery import guards, pipeline, state, timers
from notifications import queue, services
from notifications.models import Message, Notification
from tests.factories import RecipientFactory

from .conftest import accept, add_provider, smtp_config

# Also run on SQLite, the database of `make run` (make test's second pass).
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


def twilio(tenant, fake, **extra):
    config = {"account_sid": fake.account_sid, "auth_token": fake.auth_token, "from_number": "+15005550006"}
    return add_provider(tenant, "sms", "twilio", config, **extra)


def test_retry_after_from_the_provider_is_honoured(admin, tenant, ada, twilio_fake, settings):
    settings.ALERTFLOW_RETRY_BASE_SECONDS = 1
    twilio(tenant, twilio_fake)
    twilio_fake.fail_next(429, 20429, "Too Many Requests", retry_after="120")
    [message] = accept(admin, ["sms"])

    pipeline.deliver([message.id])

    message = reload(message)
    assert message.status == "retrying"
    assert message.next_attempt >= timezone.now() + timedelta(seconds=118)


def test_breaker_opens_after_repeated_failures_and_skips_the_provider(admin, tenant, ada, smtp_server, settings):
    settings.ALERTFLOW_BREAKER_FAILURES = 2
    down = add_provider(tenant, "email", "smtp", {**smtp_config(smtp_server), "port": 1}, name="down")
    first, second, third = (accept(admin, ["email"])[0] for _ in range(3))

    pipeline.deliver([first.id])
    pipeline.deliver([second.id])
    assert guards.breaker_state(str(down.id)) == "open"
    pipeline.deliver([third.id])

    third = reload(third)
    assert third.error.startswith("circuit_open")
    assert third.delivery_attempts.count() == 0  # not even tried...
    assert third.attempts == 0  # ...so it spends none of the retry budget
    assert (third.status, third.reason) == ("retrying", "providers_unavailable")
    assert third.next_attempt >= timezone.now() + timedelta(seconds=settings.ALERTFLOW_BREAKER_COOLDOWN_SECONDS - 1)


@pytest.fixture
def breaker_clock(monkeypatch):
    """Move the breakers' clock on instead of sleeping through a cooldown: a short real cooldown
    can also run out early, between two steps of a test on a loaded machine."""
    offset = 0.0
    monkeypatch.setattr(guards, "time", SimpleNamespace(time=lambda: time.time() + offset, sleep=time.sleep))

    def advance(seconds: float) -> None:
        nonlocal offset
        offset += seconds

    return advance


def test_half_open_breaker_lets_one_probe_through_and_closes_on_success(
    admin, tenant, ada, smtp_server, settings, breaker_clock
):
    settings.ALERTFLOW_BREAKER_FAILURES = 1
    settings.ALERTFLOW_BREAKER_COOLDOWN_SECONDS = 60
    provider = add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="flaky")
    smtp_server.reply_next("421 4.3.2 Service not available")
    failing, probe = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    pipeline.deliver([failing.id])
    assert guards.breaker_state(str(provider.id)) == "open"

    breaker_clock(61)
    assert guards.breaker_state(str(provider.id)) == "half-open"
    assert guards.breaker_allows(str(provider.id))  # this caller holds the probe...
    assert not guards.breaker_allows(str(provider.id))  # ...so a second one is turned away
    guards.client().delete(f"af:breaker:{provider.id}:probe")
    pipeline.deliver([probe.id])

    assert reload(probe).status == "sent"
    assert guards.breaker_state(str(provider.id)) == "closed"


def test_failed_probe_reopens_the_breaker(settings, breaker_clock):
    settings.ALERTFLOW_BREAKER_FAILURES = 1
    settings.ALERTFLOW_BREAKER_COOLDOWN_SECONDS = 60
    guards.record_failure("p1")
    assert not guards.breaker_allows("p1")
    breaker_clock(61)
    assert guards.breaker_allows("p1")

    guards.record_failure("p1")

    assert guards.breaker_state("p1") == "open"


def test_permanent_errors_do_not_open_the_breaker(admin, tenant, ada, smtp_server, settings):
    settings.ALERTFLOW_BREAKER_FAILURES = 1
    provider = add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    smtp_server.refuse_recipient("ada@example.com", "550 5.1.1 No such user")
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])

    assert guards.breaker_state(str(provider.id)) == "closed"


def test_token_bucket_spaces_sends_to_the_rate():
    started = time.monotonic()
    waits = [guards.acquire_send("bucket-a", rate=20, max_wait=1) for _ in range(30)]

    elapsed = time.monotonic() - started

    assert waits == [None] * 30
    # 20 come from the full bucket, the other 10 at 20/s: about half a second. The upper bound
    # only says it did not wait per send (a second each would be 10 s): a loaded box is slow.
    assert 0.4 <= elapsed <= 5


def test_token_bucket_refuses_a_wait_longer_than_allowed():
    assert guards.acquire_send("bucket-b", rate=1, max_wait=0) is None

    wait = guards.acquire_send("bucket-b", rate=1, max_wait=0)

    assert 0.5 < wait <= 1.0


def test_dead_letter_is_replayed_with_a_fresh_budget(
    admin, tenant, ada, smtp_server, django_capture_on_commit_callbacks
):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    smtp_server.refuse_recipient("ada@example.com", "550 5.1.1 No such user")
    [message] = accept(admin, ["email"])
    pipeline.deliver([message.id])
    assert admin.get("/api/v1/messages?status=failed").json()["results"][0]["id"] == str(message.id)
    smtp_server.refuse_recipient("ada@example.com", "")

    with django_capture_on_commit_callbacks(execute=False):
        response = admin.post(f"/api/v1/messages/{message.id}/retry")

    assert response.status_code == 202
    message = reload(message)
    assert (message.status, message.attempts) == ("queued", 0)
    assert pipeline.deliver([message.id]) == 1
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == ["permanent", "sent"]


def test_retrying_a_message_that_did_not_fail_is_409(admin, ada):
    [message] = accept(admin, ["email"])

    response = admin.post(f"/api/v1/messages/{message.id}/retry")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_failed"


def test_bulk_replay_by_filter(admin, tenant, ada):
    email, sms = accept(admin, ["email", "sms"])
    other_email = accept(admin, ["email"])[0]
    Message.objects.filter(pk__in=[email.pk, sms.pk, other_email.pk]).update(status="failed", error="boom")
    Message.objects.filter(pk=other_email.pk).update(error="different")

    response = admin.post("/api/v1/messages/retry", {"channel": "email", "error": "boom"}, format="json")

    assert response.json() == {"replayed": 1}
    assert reload(email).status == "queued"
    assert reload(sms).status == "failed"
    assert reload(other_email).status == "failed"


def test_outsider_cannot_retry_another_tenants_message(outsider, admin, ada):
    [message] = accept(admin, ["email"])
    Message.objects.filter(pk=message.pk).update(status="failed")

    assert outsider.post(f"/api/v1/messages/{message.id}/retry").status_code == 404
    assert outsider.post("/api/v1/messages/retry", {}, format="json").json() == {"replayed": 0}
    assert reload(message).status == "failed"


def test_cancel_stops_everything_not_yet_sent(admin, ada):
    when = (timezone.now() + timedelta(hours=1)).isoformat()
    email, sms = accept(admin, ["email", "sms"], send_at=when)
    Message.objects.filter(pk=sms.pk).update(status="sent")

    response = admin.post(f"/api/v1/notifications/{email.notification_id}/cancel")

    assert response.status_code == 200
    assert response.json()["cancelled_messages"] == 1
    assert (reload(email).status, reload(sms).status) == ("cancelled", "sent")
    assert admin.post(f"/api/v1/notifications/{email.notification_id}/cancel").status_code == 409


def test_a_cancelled_message_is_never_claimed(admin, ada):
    [message] = accept(admin, ["email"])
    admin.post(f"/api/v1/notifications/{message.notification_id}/cancel")

    assert pipeline.deliver([message.id]) == 0
    assert reload(message).status == "cancelled"


def test_a_claimed_message_whose_worker_died_after_the_cancel_is_not_retried(admin, ada, settings):
    [message] = accept(admin, ["email"])
    state.claim([message.id])
    assert admin.post(f"/api/v1/notifications/{message.notification_id}/cancel").json()["cancelled_messages"] == 0

    # Its lease runs out: it comes back due, and is cancelled instead of queued.
    lapsed = timezone.now() + timedelta(seconds=settings.ALERTFLOW_LEASE_SECONDS + 1)
    assert timers.enqueue_due(now=lapsed) == 0

    assert (reload(message).status, reload(message).reason) == ("cancelled", "cancelled")
    assert pipeline.deliver([message.id]) == 0


def test_a_notification_with_nothing_left_to_send_is_not_cancelled(admin, member, ada):
    email, sms = accept(admin, ["email", "sms"])
    Message.objects.filter(pk=email.pk).update(status="delivered")
    Message.objects.filter(pk=sms.pk).update(status="failed")

    response = admin.post(f"/api/v1/notifications/{email.notification_id}/cancel")

    # It stays what it is (partially failed), not a delivered notification reported cancelled.
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "nothing_to_cancel"
    assert Notification.objects.get(pk=email.notification_id).status == "accepted"
    assert member.get(f"/api/v1/notifications/{email.notification_id}").json()["status"] == "partially_failed"


def test_a_bulk_send_still_fanning_out_is_cancelled_before_any_message_is_written(admin, tenant):
    RecipientFactory(tenant=tenant, external_id="u0")
    body = {"recipients": ["u0"], "channels": ["email"], "content": {"email": {"subject": "s", "text": "t"}}}
    notification_id = admin.post("/api/v1/notifications", body, format="json").json()["id"]

    response = admin.post(f"/api/v1/notifications/{notification_id}/cancel")

    assert (response.status_code, response.json()["cancelled_messages"]) == (200, 0)
    assert services.fan_out(notification_id) == 0
    assert not Message.objects.filter(notification_id=notification_id).exists()


def test_cancel_during_fan_out_stops_the_rest(admin, tenant, monkeypatch):
    monkeypatch.setattr(services, "FAN_OUT_CHUNK", 2)
    for n in range(6):
        RecipientFactory(tenant=tenant, external_id=f"u{n}")
    body = {
        "recipients": [f"u{n}" for n in range(6)],
        "channels": ["email"],
        "content": {"email": {"subject": "s", "text": "t"}},
    }
    notification_id = admin.post("/api/v1/notifications", body, format="json").json()["id"]
    assert services.fan_out_chunk(notification_id).written == 2  # the first chunk is written...

    response = admin.post(f"/api/v1/notifications/{notification_id}/cancel")  # ...then cancelled

    assert response.json()["cancelled_messages"] == 2
    assert services.fan_out(notification_id) == 0
    assert Notification.objects.get(pk=notification_id).status == "cancelled"
    assert list(Message.objects.values_list("status", flat=True)) == ["cancelled", "cancelled"]


def test_cancel_is_404_for_an_outsider(outsider, admin, ada):
    [message] = accept(admin, ["email"], send_at=(timezone.now() + timedelta(hours=1)).isoformat())

    assert outsider.post(f"/api/v1/notifications/{message.notification_id}/cancel").status_code == 404
    assert reload(message).status == "scheduled"


def test_patch_reschedules_a_scheduled_notification(admin, ada):
    [message] = accept(admin, ["email"], send_at=(timezone.now() + timedelta(hours=1)).isoformat())
    later = timezone.now() + timedelta(days=1)

    response = admin.patch(
        f"/api/v1/notifications/{message.notification_id}", {"send_at": later.isoformat()}, format="json"
    )

    assert response.status_code == 200
    assert reload(message).next_attempt == later
    assert Notification.objects.get(pk=message.notification_id).send_at == later


@pytest.mark.parametrize("send_at", ["yesterday", "2000-01-01T00:00:00Z"])
def test_bad_reschedule_is_400(admin, ada, send_at):
    [message] = accept(admin, ["email"], send_at=(timezone.now() + timedelta(hours=1)).isoformat())

    response = admin.patch(f"/api/v1/notifications/{message.notification_id}", {"send_at": send_at}, format="json")

    assert response.status_code == 400


def test_rescheduling_what_already_left_is_409(admin, ada):
    [message] = accept(admin, ["email"])

    later = (timezone.now() + timedelta(days=1)).isoformat()
    response = admin.patch(f"/api/v1/notifications/{message.notification_id}", {"send_at": later}, format="json")

    assert response.status_code == 409


def test_due_poller_moves_scheduled_messages_to_the_queue(admin, ada):
    [message] = accept(admin, ["email"], send_at=(timezone.now() + timedelta(minutes=5)).isoformat())

    assert timers.enqueue_due() == 0
    assert timers.enqueue_due(now=timezone.now() + timedelta(minutes=6)) == 1

    assert reload(message).status == "queued"


def test_sweeper_requeues_messages_the_broker_lost(admin, ada, settings):
    settings.ALERTFLOW_STALE_QUEUED_SECONDS = 60
    lost, fresh = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    long_ago = timezone.now() - timedelta(minutes=5)
    Message.objects.filter(pk=lost.pk).update(updated=long_ago)

    swept = timers.sweep_stale()

    assert swept["messages"] == 1
    assert reload(lost).updated > long_ago
    assert reload(fresh).status == "queued"


def test_provider_rate_limit_spaces_real_sends(admin, tenant, smtp_server):
    provider = add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    provider.rate_limit = 10
    provider.save()
    ids = []
    for n in range(15):
        RecipientFactory(tenant=tenant, external_id=f"r{n}")
        ids += [m.id for m in accept(admin, ["email"], recipient=f"r{n}")]
    started = time.monotonic()

    pipeline.deliver(ids)

    # 10 from the full bucket, then 5 more at 10/s.
    assert time.monotonic() - started >= 0.4
    assert len(smtp_server.messages) == 15


def test_a_rate_limited_provider_fails_over_when_the_wait_is_long(admin, tenant, ada, smtp_server, settings):
    settings.ALERTFLOW_RATE_LIMIT_MAX_WAIT_SECONDS = 0
    slow = add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="slow", priority=0)
    slow.rate_limit = 0.01
    slow.save()
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="spare", priority=1)
    first, second = accept(admin, ["email"])[0], accept(admin, ["email"])[0]

    pipeline.deliver([first.id, second.id])

    assert [reload(m).provider for m in (first, second)] == ["slow", "spare"]


def test_sweeper_resumes_a_stalled_fan_out_but_not_one_that_progresses(admin, tenant, settings):
    settings.ALERTFLOW_STALE_QUEUED_SECONDS = 60
    broker = guards.client()  # the test worker's own Redis database, which is also the broker
    RecipientFactory(tenant=tenant, external_id="u1")
    body = {"recipients": ["u1"], "channels": ["email"], "content": {"email": {"subject": "s", "text": "t"}}}
    stalled = admin.post("/api/v1/notifications", body, format="json").json()["id"]
    busy = admin.post("/api/v1/notifications", body, format="json").json()["id"]
    long_ago = timezone.now() - timedelta(minutes=10)
    # Both started long ago; only `busy` wrote a chunk recently.
    Notification.objects.filter(pk__in=[stalled, busy]).update(created=long_ago, progressed=long_ago)
    Notification.objects.filter(pk=busy).update(progressed=timezone.now())
    queue.relay_all()
    broker.delete("default:2")  # both first steps were taken; `stalled`'s died with its worker

    timers.sweep_stale()
    queue.relay_all()

    published = [json.loads(body) for body in broker.lrange("default:2", 0, -1)]
    assert [json.loads(base64.b64decode(p["body"]))[0] for p in published] == [[stalled, 0]]
