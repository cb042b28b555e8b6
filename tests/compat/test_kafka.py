"""The Kafka notification service (shared/seeds/003): its README's requests as written.

Its README sends no credential (one service, one client); AlertFlow serves many tenants, so each
request here carries the tenant's API key, the one header a Kafka client adds.
"""

import json

import pytest
from rest_framework.test import APIClient

from alertflow.choices import Role
from delivery import pipeline
from notifications.models import Message, Notification
from templates_app.models import Template
from tests.factories import DeviceFactory, RecipientFactory, api_key
from tests.pipeline.conftest import add_provider, smtp_config

pytestmark = pytest.mark.django_db

# "Quick Start, 2. Send a notification", as written.
SEND = {"user_id": "user123", "template_id": "welcome", "channels": ["push", "email"], "data": {"username": "john_doe"}}
# The README's header for it; the API key is the one header added (module docstring).
HEADERS = {"Content-Type": "application/json"}
# A template in the service's shape: one subject and body for the channels it names.
WELCOME = {"template_id": "welcome", "name": "Welcome", "subject": "Welcome!", "body": "Hi {{username}}"}


@pytest.fixture
def kafka(tenant, smtp_server, fcm_fake):
    recipient = RecipientFactory(tenant=tenant, external_id="user123", email="john@example.com", phone="+14155552671")
    DeviceFactory(recipient=recipient, platform="fcm", token="fcm-token-john")
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    add_provider(tenant, "push", "fcm", {"service_account": fcm_fake.service_account})
    return APIClient(headers={**HEADERS, "Authorization": f"Bearer {api_key(tenant, Role.ADMIN)[1]}"})


def deliver_all() -> int:
    return pipeline.deliver(list(Message.objects.values_list("id", flat=True)))


def test_templates_post_then_send_delivers_on_every_channel_through_the_pipeline(kafka, smtp_server, fcm_fake):
    created = kafka.post("/api/v1/templates", WELCOME, format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["template_id"], created.json()["channels"]) == ("welcome", ["push", "sms", "email"])

    response = kafka.post("/api/v1/notifications", SEND, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["notification_id"] == body["id"]
    assert sorted(m["channel"] for m in body["messages"]) == ["email", "push"]
    assert deliver_all() == 2
    [email] = smtp_server.messages
    assert (email.rcpt_tos, email.message["Subject"]) == (["john@example.com"], "Welcome!")
    assert "Hi john_doe" in email.message.get_body(("plain",)).get_content()
    [push] = fcm_fake.sent
    sent = json.loads(push.body)["message"]
    assert (sent["token"], sent["notification"]) == ("fcm-token-john", {"title": "Welcome!", "body": "Hi john_doe"})
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_get_templates_is_alertflows_page_with_the_template_id_as_code(kafka):
    kafka.post("/api/v1/templates", WELCOME, format="json")

    response = kafka.get("/api/v1/templates")

    assert response.status_code == 200
    [item] = response.json()["results"]
    assert (item["code"], item["name"], item["version"]) == ("welcome", "Welcome", 1)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"recipient": "ada"}, "recipient"),
        ({"priority": "high"}, "priority"),
        ({"template_code": "welcome"}, "template_id"),
        ({"channels": ["pigeon"]}, "channels"),
        ({"channels": []}, "channels"),
    ],
)
def test_mixed_unknown_or_bad_fields_are_a_400_naming_the_field(kafka, change, field):
    kafka.post("/api/v1/templates", WELCOME, format="json")

    response = kafka.post("/api/v1/notifications", {**SEND, **change}, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]["fields"]
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**WELCOME, "language": "en"}, "language"),
        ({**WELCOME, "template_code": "x"}, "template_code"),
        ({**WELCOME, "channels": ["fax"]}, "channels"),
        ({**WELCOME, "body": "{{ x|no_such_filter }}"}, "body"),
        ({"template_id": "welcome"}, "body"),
    ],
)
def test_template_bodies_with_bad_or_foreign_fields_are_a_400(kafka, body, field):
    response = kafka.post("/api/v1/templates", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]["fields"]
    assert not Template.objects.exists()


def test_a_template_id_on_an_update_is_a_foreign_field(kafka):
    kafka.post("/api/v1/templates", WELCOME, format="json")

    response = kafka.put("/api/v1/templates/welcome", {"template_id": "welcome", "body": "x"}, format="json")

    assert response.status_code == 400
    assert "template_id" in response.json()["error"]["details"]["fields"]


def test_preferences_get_and_put_in_the_services_shape(kafka, smtp_server):
    kafka.post("/api/v1/templates", WELCOME, format="json")
    path = "/api/v1/users/user123/preferences"
    assert kafka.get(path).json()["channels"] == {"email": True, "sms": True, "push": True, "inapp": True}

    response = kafka.put(path, {"channels": {"email": False}}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["user_id"] == "user123"
    assert response.json()["channels"]["email"] is False and response.json()["channels"]["push"] is True
    # The send respects it: email is suppressed, push still goes.
    kafka.post("/api/v1/notifications", SEND, format="json")
    statuses = dict(Message.objects.values_list("channel", "status"))
    assert statuses == {"email": "suppressed", "push": "queued"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channels": {"email": False}, "email": False}, "email"),
        ({"channels": {"fax": False}}, "channels"),
        ({"channels": {"email": False}, "user_id": "someone-else"}, "user_id"),
        ({"user_id": "user123"}, "channels"),
    ],
)
def test_preferences_refuse_bad_mixed_or_foreign_fields(kafka, body, field):
    path = "/api/v1/users/user123/preferences"

    response = kafka.put(path, body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]["fields"]
    assert kafka.get(path).json()["channels"]["email"] is True


def test_health_at_the_root_needs_no_key():
    response = APIClient().get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_alertflow_own_send_with_channels_and_data_is_unchanged(kafka):
    kafka.post("/api/v1/templates", WELCOME, format="json")
    body = {"recipient": "user123", "template": "welcome", "channels": ["email"], "data": {"username": "x"}}

    response = kafka.post("/api/v1/notifications", body, format="json")

    assert response.status_code == 202
    assert "notification_id" not in response.json()


def test_outsider_tenant_gets_404(kafka, outsider):
    kafka.post("/api/v1/templates", WELCOME, format="json")
    path = "/api/v1/users/user123/preferences"

    assert outsider.get(path).status_code == 404
    assert outsider.put(path, {"channels": {"email": False}}, format="json").status_code == 404
    send = outsider.post("/api/v1/notifications", SEND, format="json")
    assert 400 <= send.status_code < 500 and send.status_code != 202
    assert not Notification.objects.exists()
    assert outsider.get("/api/v1/templates").json()["results"] == []
