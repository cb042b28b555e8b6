import base64
import json

import pytest
from django.db import IntegrityError, transaction

from notifications import queue, services, tasks
from notifications.models import Message, Notification
from preferences.models import Recipient
from preferences.serializers import RecipientSerializer
from tests.factories import RecipientFactory, TopicFactory

from .conftest import EMAIL

# Also run on SQLite, the database of `make run` (make test's second pass).
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def bulk(client, recipients, **extra):
    body = {"recipients": recipients, "channels": ["email"], "content": EMAIL, **extra}
    return client.post("/api/v1/notifications", body, format="json")


def test_bulk_send_answers_at_once_and_fans_out_in_chunks(admin, tenant, settings, monkeypatch):
    monkeypatch.setattr(services, "FAN_OUT_CHUNK", 3)
    for n in range(7):
        RecipientFactory(tenant=tenant, external_id=f"u{n}")

    response = bulk(admin, [f"u{n}" for n in range(7)] + [{"id": "fresh", "email": "fresh@example.com"}])

    assert response.status_code == 202
    assert "messages" not in response.json()
    notification = Notification.objects.get(pk=response.json()["id"])
    assert notification.status == "fanning_out"
    assert services.fan_out(notification.id) == 8
    notification.refresh_from_db()
    assert notification.status == "accepted"
    assert Message.objects.filter(notification=notification, batched=True, status="queued").count() == 8
    assert Recipient.objects.filter(tenant=tenant, external_id="fresh").exists()


def test_a_second_fan_out_of_the_same_notification_writes_nothing(admin, tenant):
    RecipientFactory(tenant=tenant, external_id="u1")
    notification_id = bulk(admin, ["u1"]).json()["id"]

    services.fan_out(notification_id)

    assert services.fan_out(notification_id) == 0
    assert Message.objects.count() == 1


def test_fan_out_resumes_from_its_cursor(admin, tenant, monkeypatch):
    monkeypatch.setattr(services, "FAN_OUT_CHUNK", 2)
    for n in range(5):
        RecipientFactory(tenant=tenant, external_id=f"u{n}")
    notification = Notification.objects.get(pk=bulk(admin, [f"u{n}" for n in range(5)]).json()["id"])
    # As if a worker had written the first chunk and died.
    Notification.objects.filter(pk=notification.pk).update(fanned_out=2)

    assert services.fan_out(notification.id) == 3
    assert sorted(Message.objects.values_list("recipient__external_id", flat=True)) == ["u2", "u3", "u4"]


def test_bulk_with_unknown_ids_is_400_listing_them(admin, tenant):
    RecipientFactory(tenant=tenant, external_id="u1")

    response = bulk(admin, ["u1", "ghost", "phantom"])

    assert response.status_code == 400
    assert "ghost" in response.json()["error"]["message"]
    assert "phantom" in response.json()["error"]["message"]
    assert not Notification.objects.exists()


def test_a_bad_contact_field_in_a_bulk_list_is_400_naming_its_index(admin, tenant):
    targets = [{"id": "ok", "email": "ok@example.com"}, {"id": "bad", "email": "not-an-address"}]

    response = bulk(admin, targets)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"]["fields"]["recipients"] == {
        "1": {"email": ["Enter a valid email address."]}
    }
    assert not Notification.objects.exists()


def test_a_bulk_list_of_recipient_objects_is_checked_by_one_contact_serializer(admin, monkeypatch):
    # Building a RecipientSerializer per object made 10,000 of them cost 5 s of CPU (bench.bulkaccept).
    built = []
    build = RecipientSerializer.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        build(self, *args, **kwargs)

    monkeypatch.setattr(RecipientSerializer, "__init__", counting)

    response = bulk(admin, [{"id": f"n{n}", "email": f"n{n}@example.com"} for n in range(50)])

    assert response.status_code == 202, response.content
    assert len(built) == 1


def test_bulk_over_10000_recipients_is_400(admin):
    response = bulk(admin, [f"u{n}" for n in range(10_001)])

    assert response.status_code == 400


def test_bulk_respects_each_recipients_preferences(admin, tenant):
    RecipientFactory(tenant=tenant, external_id="yes")
    RecipientFactory(tenant=tenant, external_id="no")
    admin.put("/api/v1/recipients/no/preferences", {"channels": {"email": False}}, format="json")

    services.fan_out(bulk(admin, ["yes", "no"]).json()["id"])

    statuses = dict(Message.objects.values_list("recipient__external_id", "status"))
    assert statuses == {"yes": "queued", "no": "suppressed"}


def test_topic_send_reaches_every_subscriber(admin, tenant, monkeypatch):
    monkeypatch.setattr(services, "FAN_OUT_CHUNK", 2)
    topic = TopicFactory(tenant=tenant, key="news")
    subscribers = [RecipientFactory(tenant=tenant) for _ in range(5)]
    RecipientFactory(tenant=tenant)  # not subscribed
    admin.post(f"/api/v1/topics/{topic.key}/subscribers", {"add": [r.external_id for r in subscribers]}, format="json")

    response = admin.post(
        "/api/v1/notifications", {"topic": "news", "channels": ["email"], "content": EMAIL}, format="json"
    )
    services.fan_out(response.json()["id"])

    assert response.status_code == 202
    assert set(Message.objects.values_list("recipient_id", flat=True)) == {r.pk for r in subscribers}


def test_unknown_topic_is_400(admin):
    response = admin.post(
        "/api/v1/notifications", {"topic": "nope", "channels": ["email"], "content": EMAIL}, format="json"
    )

    assert response.status_code == 400
    assert "topic" in response.json()["error"]["details"]["fields"]


def test_another_tenants_topic_is_unknown(outsider, tenant):
    TopicFactory(tenant=tenant, key="news")

    response = outsider.post(
        "/api/v1/notifications", {"topic": "news", "channels": ["email"], "content": EMAIL}, format="json"
    )

    assert response.status_code == 400


def test_a_recipient_listed_twice_gets_one_message(admin, tenant):
    RecipientFactory(tenant=tenant, external_id="u1")
    RecipientFactory(tenant=tenant, external_id="u2")

    notification_id = bulk(admin, ["u1", "u2", "u1", {"id": "u2", "email": "x@example.com"}]).json()["id"]
    services.fan_out(notification_id)

    assert sorted(Message.objects.values_list("recipient__external_id", flat=True)) == ["u1", "u2"]


def published_steps(broker) -> list:
    """The arguments of the fan-out steps waiting in the default queue."""
    return [json.loads(base64.b64decode(json.loads(raw)["body"]))[0] for raw in broker.lrange("default:2", 0, -1)]


def test_a_fan_out_task_writes_one_chunk_then_publishes_the_next_step(admin, tenant, monkeypatch, broker):
    monkeypatch.setattr(services, "FAN_OUT_CHUNK", 2)
    for n in range(5):
        RecipientFactory(tenant=tenant, external_id=f"u{n}")
    notification_id = bulk(admin, [f"u{n}" for n in range(5)]).json()["id"]
    queue.relay_all()
    assert published_steps(broker) == [[notification_id, None]]  # the accept's first step
    broker.delete("default:2")  # taken by the worker that runs it, here:

    assert tasks.fan_out(notification_id) == 2
    queue.relay_all()

    # However large the audience, one task writes one chunk: a step stays far below the task
    # time limit, and the next step continues from the committed checkpoint.
    assert Message.objects.count() == 2
    assert Notification.objects.get(pk=notification_id).fanned_out == 2
    assert published_steps(broker) == [[notification_id, 2]]
    for expected_total in (4, 5):
        [[_, after]] = published_steps(broker)
        broker.delete("default:2")
        tasks.fan_out(notification_id, after)
        queue.relay_all()
        assert Message.objects.count() == expected_total
    broker.delete("default:2")
    assert tasks.fan_out(notification_id, 5) is None  # nothing left: the chain ends
    queue.relay_all()
    assert published_steps(broker) == []
    assert Notification.objects.get(pk=notification_id).status == "accepted"


def test_a_twin_step_from_a_passed_checkpoint_writes_nothing(admin, tenant, monkeypatch):
    monkeypatch.setattr(services, "FAN_OUT_CHUNK", 2)
    for n in range(5):
        RecipientFactory(tenant=tenant, external_id=f"u{n}")
    notification_id = bulk(admin, [f"u{n}" for n in range(5)]).json()["id"]

    assert services.fan_out_step(notification_id, after=0) == 2
    # The sweeper resumed the fan-out from 0 while that step was only waiting in the queue.
    assert services.fan_out_step(notification_id, after=0) is None

    assert Message.objects.count() == 2


def test_a_step_killed_mid_chunk_commits_nothing_and_the_next_resumes_from_the_checkpoint(admin, tenant, monkeypatch):
    monkeypatch.setattr(services, "FAN_OUT_CHUNK", 2)
    for n in range(5):
        RecipientFactory(tenant=tenant, external_id=f"u{n}")
    notification_id = bulk(admin, [f"u{n}" for n in range(5)]).json()["id"]
    services.fan_out_step(notification_id)

    class Killed(BaseException):
        """The worker dying between writing a chunk and committing it."""

    def die(messages):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(services.queue, "enqueue_on_commit", die)
        with pytest.raises(Killed):
            services.fan_out_step(notification_id, after=2)

    assert Message.objects.count() == 2
    assert Notification.objects.get(pk=notification_id).fanned_out == 2
    assert services.fan_out(notification_id) == 3
    assert sorted(Message.objects.values_list("recipient__external_id", flat=True)) == [f"u{n}" for n in range(5)]


def test_a_recipient_is_never_written_twice_for_one_notification(admin, tenant):
    RecipientFactory(tenant=tenant, external_id="u1")
    notification_id = bulk(admin, ["u1"]).json()["id"]
    services.fan_out(notification_id)
    [message] = Message.objects.all()

    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(
            tenant=tenant, notification_id=notification_id, recipient=message.recipient, channel="email"
        )
