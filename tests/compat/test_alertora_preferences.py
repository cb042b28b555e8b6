"""Alertora (shared/seeds/000): its user preference service, GET and POST /preferences."""

import pytest
from rest_framework.test import APIClient

from alertflow.choices import Role
from delivery import pipeline
from notifications.models import Message
from preferences.models import Recipient
from tests.factories import api_key
from tests.pipeline.conftest import add_provider, smtp_config

pytestmark = pytest.mark.django_db

# The README's /notify request, as written.
NOTIFY = {
    "recipient_id": "user@example.com",
    "notification_type": "promo",
    "channel": "email",
    "content": "🔥 Big Sale starts now!",
}


def bearer(token: str) -> APIClient:
    return APIClient(headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


@pytest.fixture
def alertora(smtp_server):
    """A client registered through Alertora's own `POST /register`, with an SMTP provider."""
    registered = APIClient().post(
        "/register", {"service_name": "MyApp", "notification_types": ["promo", "security_alert"]}, format="json"
    )
    assert registered.status_code == 201
    client = bearer(registered.json()["api_token"])
    assert client.post("/notify", NOTIFY, format="json").status_code == 202
    recipient = Recipient.objects.get()
    add_provider(recipient.tenant, "email", "smtp", smtp_config(smtp_server))
    return client


def test_get_reads_the_defaults(alertora):
    response = alertora.get("/preferences", {"recipient_id": "user@example.com"})

    assert response.status_code == 200
    assert response.json() == {
        "recipient_id": "user@example.com",
        "channels": {"email": True, "sms": True, "push": True, "inapp": True},
        "notification_types": {},
    }


def test_post_updates_what_it_names_and_notify_then_answers_403(alertora):
    response = alertora.post(
        "/preferences", {"recipient_id": "user@example.com", "channels": {"email": False}}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["channels"] == {"email": False, "sms": True, "push": True, "inapp": True}
    refused = alertora.post("/notify", NOTIFY, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "preference_rejected"


def test_a_notification_type_opt_out_keeps_the_others_delivered(alertora, smtp_server):
    response = alertora.post(
        "/preferences",
        {"recipient_id": "user@example.com", "notification_types": {"security_alert": {"email": False}}},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["notification_types"] == {"security_alert": {"email": False}}
    assert alertora.post("/notify", {**NOTIFY, "notification_type": "security_alert"}, format="json").status_code == 403

    accepted = alertora.post("/notify", NOTIFY, format="json")
    assert accepted.status_code == 202
    assert pipeline.deliver(list(Message.objects.filter(status="queued").values_list("id", flat=True))) >= 1
    assert any(m.rcpt_tos == ["user@example.com"] for m in smtp_server.messages)
    assert alertora.get("/preferences", {"recipient_id": "user@example.com"}).json()["channels"]["email"] is True


def test_post_creates_an_email_recipient(alertora):
    response = alertora.post(
        "/preferences", {"recipient_id": "new@example.com", "channels": {"sms": False}}, format="json"
    )

    assert response.status_code == 200
    assert Recipient.objects.get(external_id="new@example.com").email == "new@example.com"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "recipient_id"),
        ({"recipient_id": "user@example.com", "chanels": {"email": False}}, "chanels"),
        ({"recipient_id": "user@example.com", "channels": {"fax": False}}, "channels"),
        ({"recipient_id": "user@example.com", "notification_types": {"nope": {"email": False}}}, "notification_types"),
    ],
)
def test_bad_bodies_are_a_400_naming_the_field(alertora, body, field):
    response = alertora.post("/preferences", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["details"]["fields"]


def test_missing_json_body_is_400(alertora):
    assert alertora.generic("POST", "/preferences", "", content_type="application/json").status_code == 400


def test_get_without_recipient_id_is_400(alertora):
    assert alertora.get("/preferences").status_code == 400


def test_without_a_key_is_401(anonymous):
    assert anonymous.get("/preferences", {"recipient_id": "user@example.com"}).status_code == 401
    assert anonymous.post("/preferences", {"recipient_id": "x@example.com"}, format="json").status_code == 401


def test_a_member_key_reads_but_cannot_write(alertora):
    tenant = Recipient.objects.get().tenant
    member = bearer(api_key(tenant, Role.MEMBER)[1])

    assert member.get("/preferences", {"recipient_id": "user@example.com"}).status_code == 200
    assert member.post("/preferences", {"recipient_id": "user@example.com"}, format="json").status_code == 403


def test_outsider_tenant_gets_404_and_changes_nothing(alertora, outsider):
    assert outsider.get("/preferences", {"recipient_id": "user@example.com"}).status_code == 404
    outsider.post("/preferences", {"recipient_id": "user@example.com", "channels": {"email": False}}, format="json")

    assert alertora.get("/preferences", {"recipient_id": "user@example.com"}).json()["channels"]["email"] is True
