"""A notification says where it is: its status summarises its messages, with counts by status."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications import services
from notifications.models import Message
from tests.factories import RecipientFactory

from .conftest import EMAIL, send

pytestmark = pytest.mark.django_db


def status_of(client, notification_id) -> tuple[str, dict]:
    body = client.get(f"/api/v1/notifications/{notification_id}").json()
    return body["status"], body["counts"]


def test_a_send_scheduled_next_week_says_scheduled(admin, member, outsider, ada):
    next_week = (timezone.now() + timedelta(days=7)).isoformat()
    response = send(admin, recipient="ada", channels=["email", "sms"], send_at=next_week)

    assert response.json()["status"] == "scheduled"
    assert status_of(member, response.json()["id"]) == ("scheduled", {"scheduled": 2})
    assert outsider.get(f"/api/v1/notifications/{response.json()['id']}").status_code == 404


def two_recipient_send(admin, tenant) -> str:
    for external_id in ("u1", "u2"):
        RecipientFactory(tenant=tenant, external_id=external_id)
    body = {"recipients": ["u1", "u2"], "channels": ["email"], "content": EMAIL}
    notification_id = admin.post("/api/v1/notifications", body, format="json").json()["id"]
    services.fan_out(notification_id)
    return notification_id


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("queued", "queued", "queued"),
        ("sending", "queued", "in_progress"),
        ("sent", "scheduled", "in_progress"),
        ("retrying", "failed", "in_progress"),
        ("delivered", "sent", "completed"),
        ("sent", "suppressed", "completed"),
        ("read", "bounced", "partially_failed"),
        ("failed", "complained", "failed"),
        ("failed", "suppressed", "failed"),
    ],
)
def test_the_status_summarises_the_messages(admin, member, tenant, first, second, expected):
    notification_id = two_recipient_send(admin, tenant)
    one, two = Message.objects.filter(notification_id=notification_id).order_by("recipient__external_id")
    Message.objects.filter(pk=one.pk).update(status=first)
    Message.objects.filter(pk=two.pk).update(status=second)

    status, counts = status_of(member, notification_id)

    assert status == expected
    assert counts == dict(Counter([first, second]))


def test_a_bulk_send_still_fanning_out_is_queued_then_its_messages_speak(admin, member, tenant):
    RecipientFactory(tenant=tenant, external_id="u1")
    body = {"recipients": ["u1"], "channels": ["email"], "content": EMAIL}
    response = admin.post("/api/v1/notifications", body, format="json")

    assert response.json()["status"] == "queued"
    assert status_of(member, response.json()["id"]) == ("queued", {})
    services.fan_out(response.json()["id"])
    assert status_of(member, response.json()["id"]) == ("queued", {"queued": 1})


def test_a_cancelled_send_says_cancelled_with_what_had_left(admin, member, tenant):
    notification_id = two_recipient_send(admin, tenant)
    Message.objects.filter(notification_id=notification_id, recipient__external_id="u1").update(status="sent")

    admin.post(f"/api/v1/notifications/{notification_id}/cancel")

    assert status_of(member, notification_id) == ("cancelled", {"sent": 1, "cancelled": 1})


def test_the_history_reads_every_status_of_a_page_in_one_query(admin, member, ada):
    for _ in range(6):
        send(admin, recipient="ada", channels=["email"])

    with CaptureQueriesContext(connection) as queries:
        results = member.get("/api/v1/notifications").json()["results"]

    assert [n["status"] for n in results] == ["queued"] * 6
    assert [n["counts"] for n in results] == [{"queued": 1}] * 6
    assert len([q for q in queries if "notifications_message" in q["sql"]]) == 1
