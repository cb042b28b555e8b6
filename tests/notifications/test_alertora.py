"""The original Alertora API, as its README documents it: /register then /notify."""

import pytest
from rest_framework.test import APIClient

from notifications.models import Message
from preferences.models import Recipient

pytestmark = pytest.mark.django_db


@pytest.fixture
def alertora():
    token = (
        APIClient()
        .post("/register", {"service_name": "MyApp", "notification_types": ["promo"]}, format="json")
        .json()["api_token"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def notify(client, **overrides):
    body = {
        "recipient_id": "user@example.com",
        "notification_type": "promo",
        "channel": "email",
        "content": "Big Sale!",
    }
    return client.post("/notify", {**body, **overrides}, format="json")


def test_notify_accepts_and_creates_the_recipient_from_the_email(alertora):
    response = notify(alertora)

    assert response.status_code == 202
    assert response.json()["message"] == "Notification accepted"
    message = Message.objects.get(notification_id=response.json()["notification_id"])
    assert message.channel == "email"
    assert message.recipient.email == "user@example.com"
    assert Recipient.objects.count() == 1


def test_content_is_literal_text_not_template_code(alertora):
    notification_id = notify(alertora, content="{{ settings.SECRET_KEY }} {% debug %}").json()["notification_id"]

    message = Message.objects.select_related("notification").get(notification_id=notification_id)
    assert message.notification.data["content"] == "{{ settings.SECRET_KEY }} {% debug %}"


def test_notify_without_a_key_is_401(anonymous):
    assert notify(anonymous).status_code == 401


@pytest.mark.parametrize("missing", ["recipient_id", "notification_type", "channel", "content"])
def test_notify_with_a_missing_field_is_400(alertora, missing):
    body = {"recipient_id": "user@example.com", "notification_type": "promo", "channel": "email", "content": "x"}
    del body[missing]

    assert alertora.post("/notify", body, format="json").status_code == 400


def test_notify_without_a_json_body_is_400(alertora):
    response = alertora.generic("POST", "/notify", "", content_type="application/json")

    assert response.status_code == 400


def test_notify_unknown_type_is_400(alertora):
    assert notify(alertora, notification_type="nope").status_code == 400


def test_notify_rejected_by_preferences_is_403(alertora):
    notify(alertora)
    alertora.put("/api/v1/recipients/user@example.com/preferences", {"channels": {"email": False}}, format="json")

    response = notify(alertora)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "preference_rejected"
