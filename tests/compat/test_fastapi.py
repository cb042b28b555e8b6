"""The FastAPI + RabbitMQ system (shared/seeds/004): the paths its README lists, with the bodies of
the HNG stage-4 contract it implements (the README lists paths only), against the real app."""

import pytest
from rest_framework.test import APIClient

from alertflow.choices import Role
from delivery import pipeline
from notifications.models import Message, Notification
from preferences.models import Device, Recipient
from tests.compat.hng_readme import SEND
from tests.factories import api_key
from tests.pipeline.conftest import add_provider, smtp_config

pytestmark = pytest.mark.django_db

USER = {
    "name": "John Doe",
    "email": "john@example.com",
    "push_token": "fcm-token-john",
    "preferences": {"email": True, "push": True},
    "password": "SecurePass123!",
}
TEMPLATE = {
    "template_code": "welcome_email",
    "name": "Welcome Email",
    "subject": "Welcome to {{company_name}}, {{name}}!",
    "body": "<p>Hello {{name}}, verify at {{verification_link}}</p>",
    "language": "en",
}


@pytest.fixture
def client(tenant, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    secret = api_key(tenant, Role.ADMIN)[1]
    return APIClient(headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})


def create_user(client) -> str:
    response = client.post("/api/v1/users/", USER, format="json")
    assert response.status_code == 201, response.content
    return response.json()["data"]["id"]


def test_users_create_get_and_update_a_recipient(client, tenant):
    response = client.post("/api/v1/users/", USER, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["success"], body["message"], body["error"]) == (True, "User created successfully", None)
    data = body["data"]
    assert (data["name"], data["email"], data["push_token"]) == ("John Doe", "john@example.com", "fcm-token-john")
    assert data["preferences"] == {"email": True, "push": True}
    assert "password" not in data
    recipient = Recipient.objects.get(tenant=tenant, external_id=data["id"])
    assert Device.objects.get(recipient=recipient).token == "fcm-token-john"
    assert USER["password"] not in str(Recipient.objects.filter(pk=recipient.pk).values().get())

    fetched = client.get(f"/api/v1/users/{data['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["data"]["email"] == "john@example.com"

    updated = client.put(
        f"/api/v1/users/{data['id']}", {"name": "John D.", "preferences": {"email": False, "push": True}}, format="json"
    )
    assert updated.status_code == 200, updated.content
    assert updated.json()["data"]["name"] == "John D."
    assert updated.json()["data"]["preferences"] == {"email": False, "push": True}
    assert client.get(f"/api/v1/recipients/{data['id']}/preferences").json()["channels"]["email"] is False


def test_a_second_user_with_the_same_email_is_a_409(client):
    create_user(client)

    response = client.post("/api/v1/users/", {**USER, "email": "JOHN@example.com"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "user_exists"
    assert Recipient.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phone": "+14155552671"}, "phone"),
        ({"email": "not-an-email"}, "email"),
        ({"preferences": {"sms": 1}}, "preferences"),
        # Checked as POST /recipients/{id}/devices checks a token. A long one overflowed the
        # unique (tenant, platform, token) B-tree index: a 500 from PostgreSQL.
        ({"push_token": "".join(f"{i * 7919 % 65521:x}" for i in range(1000))}, "push_token"),
        ({"push_token": "fcm token"}, "push_token"),
    ],
)
def test_bad_or_unknown_user_fields_are_a_400_naming_the_field(client, change, field):
    response = client.post("/api/v1/users/", {**USER, **change}, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]["fields"]
    assert not Recipient.objects.exists()


def test_send_with_a_trailing_slash_and_its_status_path(client, smtp_server):
    user_id = create_user(client)
    assert client.post("/api/v1/templates/", TEMPLATE, format="json").status_code == 201

    response = client.post("/api/v1/notifications/", {**SEND, "user_id": user_id}, format="json")

    assert response.status_code == 202, response.content
    notification_id = response.json()["data"]["notification_id"]
    status_path = f"/api/v1/notifications/{notification_id}/status"
    assert client.get(status_path).json()["data"]["status"] == "pending"

    assert pipeline.deliver(list(Message.objects.values_list("id", flat=True))) == 1

    answer = client.get(status_path)
    assert answer.status_code == 200
    assert answer.json()["data"]["status"] == "delivered"
    assert answer.json()["data"]["notification_id"] == notification_id
    [received] = smtp_server.messages
    assert (received.rcpt_tos, received.message["Subject"]) == (["john@example.com"], "Welcome to Acme Inc, John Doe!")
    # The bare notification id reads the same.
    bare = notification_id.removeprefix("notif_")
    assert client.get(f"/api/v1/notifications/{bare}/status").json()["data"]["status"] == "delivered"


def test_templates_by_template_code(client):
    assert client.post("/api/v1/templates/", TEMPLATE, format="json").status_code == 201

    fetched = client.get("/api/v1/templates/welcome_email")
    assert fetched.status_code == 200
    assert fetched.json()["channels"]["email"]["subject"] == TEMPLATE["subject"]

    updated = client.put("/api/v1/templates/welcome_email", {"body": "<p>Hi {{name}}</p>"}, format="json")
    assert updated.status_code == 200
    assert (updated.json()["data"]["version"], updated.json()["data"]["body"]) == (2, "<p>Hi {{name}}</p>")


def test_outsider_tenant_gets_404(client, outsider):
    user_id = create_user(client)
    client.post("/api/v1/templates/", TEMPLATE, format="json")
    notification_id = client.post("/api/v1/notifications/", {**SEND, "user_id": user_id}, format="json").json()["data"][
        "notification_id"
    ]

    assert outsider.get(f"/api/v1/users/{user_id}").status_code == 404
    assert outsider.put(f"/api/v1/users/{user_id}", {"name": "Mallory"}, format="json").status_code == 404
    assert outsider.get(f"/api/v1/notifications/{notification_id}/status").status_code == 404
    assert outsider.get("/api/v1/templates/welcome_email").status_code == 404
    assert Recipient.objects.get(external_id=user_id).name == "John Doe"
    assert Notification.objects.count() == 1
