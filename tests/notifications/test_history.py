import base64

import pytest

from notifications.models import DeliveryAttempt, Message

from .conftest import send

pytestmark = pytest.mark.django_db


def test_detail_shows_messages_with_attempts(admin, member, ada, promo):
    notification_id = send(admin, recipient="ada", category="promo", channels=["email"]).json()["id"]
    message = Message.objects.get(notification_id=notification_id)
    DeliveryAttempt.objects.create(message=message, provider="smtp-main", outcome="transient", error="451 try later")

    body = member.get(f"/api/v1/notifications/{notification_id}").json()

    assert body["id"] == notification_id
    assert body["category"] == "promo"
    assert body["status"] == "queued"
    assert body["counts"] == {"queued": 1}
    [shown] = body["messages"]
    assert shown["recipient"] == "ada"
    assert shown["channel"] == "email"
    assert shown["priority"] == "low"
    assert shown["attempts"][0]["provider"] == "smtp-main"
    assert shown["attempts"][0]["outcome"] == "transient"
    assert shown["attempts"][0]["error"] == "451 try later"


def test_a_notification_without_category_shows_null_as_the_schema_says(admin, member, ada, anonymous):
    send(admin, recipient="ada", channels=["email"])

    [shown] = member.get("/api/v1/notifications").json()["results"]
    schema = anonymous.get("/api/schema?format=json").json()

    assert shown["category"] is None
    assert schema["components"]["schemas"]["Notification"]["properties"]["category"]["nullable"] is True


def test_outsider_gets_404_on_notification_and_message(outsider, admin, ada):
    notification_id = send(admin, recipient="ada", channels=["email"]).json()["id"]
    message_id = Message.objects.get(notification_id=notification_id).pk

    assert outsider.get(f"/api/v1/notifications/{notification_id}").status_code == 404
    assert outsider.get(f"/api/v1/messages/{message_id}").status_code == 404
    assert outsider.get("/api/v1/notifications").json()["results"] == []
    assert outsider.get("/api/v1/messages").json()["results"] == []


def test_history_filters(admin, ada, promo, otp, tenant):
    from tests.factories import RecipientFactory

    RecipientFactory(tenant=tenant, external_id="bob", phone="+14155550100")
    promo_id = send(admin, recipient="ada", category="promo").json()["id"]
    otp_id = send(admin, recipient="bob", category="otp").json()["id"]

    def ids(query):
        return [n["id"] for n in admin.get(f"/api/v1/notifications?{query}").json()["results"]]

    assert ids("category=promo") == [promo_id]
    assert ids("recipient=bob") == [otp_id]
    assert ids("channel=sms") == [otp_id]
    assert ids("status=queued") == [otp_id, promo_id]
    assert ids("status=failed") == []
    assert ids("created_after=2000-01-01T00:00:00Z") == [otp_id, promo_id]
    assert ids("created_before=2000-01-01T00:00:00Z") == []


@pytest.mark.parametrize("path", ["/api/v1/notifications", "/api/v1/messages"])
@pytest.mark.parametrize(
    "query",
    [
        "created_after=yesterday",
        # Well formed, but no such date or time: parse_datetime raises instead of answering None.
        "created_after=2026-02-30T10:00:00Z",
        "created_before=2026-01-01T25:00:00Z",
    ],
)
def test_bad_date_filter_is_400(admin, path, query):
    response = admin.get(f"{path}?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("path", ["/api/v1/notifications", "/api/v1/messages"])
@pytest.mark.parametrize("position", ["garbage", "2026-02-30T10:00:00Z"])
def test_a_hand_made_cursor_is_404_like_any_invalid_cursor(admin, ada, path, position):
    """The cursor is base64, not signed: a position the ordering's date field cannot read raised
    Django's ValidationError from the filter, a 500."""
    send(admin, recipient="ada", channels=["email"])
    cursor = base64.urlsafe_b64encode(f"o=0&r=0&p={position}".encode()).decode()

    response = admin.get(f"{path}?cursor={cursor}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_history_is_cursor_paginated(admin, ada):
    sent = [send(admin, recipient="ada", channels=["email"]).json()["id"] for _ in range(3)]

    first = admin.get("/api/v1/notifications?page_size=2").json()
    second = admin.get(first["next"]).json()

    assert [n["id"] for n in first["results"]] == sent[::-1][:2]
    assert [n["id"] for n in second["results"]] == sent[::-1][2:]
    assert second["next"] is None


def test_messages_filter_dead_letters(admin, ada):
    notification_id = send(admin, recipient="ada", channels=["email", "sms"]).json()["id"]
    Message.objects.filter(notification_id=notification_id, channel="sms").update(
        status="failed", error="21211 invalid"
    )

    failed = admin.get("/api/v1/messages?status=failed").json()["results"]
    by_error = admin.get("/api/v1/messages?error=21211").json()["results"]

    assert [m["channel"] for m in failed] == ["sms"]
    assert [m["channel"] for m in by_error] == ["sms"]
