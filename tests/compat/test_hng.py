"""The HNG distributed notification system (shared/seeds/002): its README's requests as written."""

import pytest
from django.contrib.auth.hashers import make_password
from rest_framework.test import APIClient

from alertflow.choices import Role
from delivery import pipeline
from notifications.models import Message, Notification
from tests.compat.hng_readme import SEND, USER_ID
from tests.factories import MembershipFactory, RecipientFactory, api_key
from tests.pipeline.conftest import add_provider, smtp_config

pytestmark = pytest.mark.django_db

# "2. Create a Template": its subject and body, stored as an AlertFlow email template.
WELCOME = {
    "code": "welcome_email",
    "name": "Welcome Email",
    "channels": {
        "email": {
            "subject": "Welcome to {{company_name}}, {{name}}!",
            "html": '<html><body><h1>Hello {{name}}</h1><p>Welcome to {{company_name}}! Click <a href="'
            '{{verification_link}}">here</a> to verify your email.</p></body></html>',
        }
    },
}


@pytest.fixture
def api_key_secret(tenant):
    return api_key(tenant, Role.ADMIN)[1]


@pytest.fixture
def hng(api_key_secret, tenant, smtp_server):
    """An HNG client: `Authorization: Bearer <token>` and JSON, as in the README."""
    RecipientFactory(tenant=tenant, external_id=USER_ID, name="John Doe", email="john@example.com")
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    client = APIClient(headers={"Authorization": f"Bearer {api_key_secret}", "Content-Type": "application/json"})
    assert client.post("/api/v1/templates", WELCOME, format="json").status_code == 201
    return client


def deliver_all() -> int:
    return pipeline.deliver(list(Message.objects.values_list("id", flat=True)))


def test_send_answers_the_envelope_and_delivers_through_the_pipeline(hng, smtp_server):
    response = hng.post("/api/v1/notifications", SEND, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "Notification queued successfully"
    assert body["data"]["status"] == "pending"
    assert body["data"]["notification_id"].startswith("notif_")
    [message] = Message.objects.all()
    assert (message.channel, message.recipient.external_id, message.priority) == ("email", USER_ID, "high")
    assert message.notification.metadata == {"campaign_id": "welcome_campaign_2025"}

    assert deliver_all() == 1

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["john@example.com"]
    assert received.message["Subject"] == "Welcome to Acme Inc, John Doe!"
    assert "https://example.com/verify/abc123" in received.message.get_body(("html",)).get_content()


def test_status_reads_pending_then_delivered(hng):
    notification_id = hng.post("/api/v1/notifications", SEND, format="json").json()["data"]["notification_id"]

    pending = hng.get(f"/api/v1/notifications/{notification_id}")
    assert pending.status_code == 200
    assert pending.json()["data"]["status"] == "pending"

    deliver_all()
    # "4. Check Notification Status", as written.
    response = hng.get(f"/api/v1/notifications/{notification_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "Notification found"
    assert body["data"]["notification_id"] == notification_id
    assert body["data"]["status"] == "delivered"
    assert body["data"]["notification_type"] == "email"
    assert {"created_at", "updated_at"} <= set(body["data"])


def test_status_reads_failed_for_a_dead_letter(hng, smtp_server):
    smtp_server.refuse_recipient("john@example.com", "550 5.1.1 No such user")
    notification_id = hng.post("/api/v1/notifications", SEND, format="json").json()["data"]["notification_id"]
    deliver_all()

    assert hng.get(f"/api/v1/notifications/{notification_id}").json()["data"]["status"] == "failed"


def test_the_x_api_key_header_works_too(api_key_secret, hng):
    client = APIClient(headers={"X-API-Key": api_key_secret, "Content-Type": "application/json"})

    assert client.post("/api/v1/notifications", SEND, format="json").status_code == 202


def test_request_id_is_the_idempotency_key(hng):
    first = hng.post("/api/v1/notifications", SEND, format="json").json()
    again = hng.post("/api/v1/notifications", SEND, format="json")

    assert again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["notification_id"] == first["data"]["notification_id"]
    assert Notification.objects.count() == 1


@pytest.mark.parametrize(
    ("priority", "level"), [(0, "low"), (3, "normal"), (5, "high"), (8, "critical"), (10, "critical")]
)
def test_priority_maps_onto_four_levels(hng, priority, level):
    body = {**SEND, "priority": priority, "request_id": f"req-{priority}"}

    assert hng.post("/api/v1/notifications", body, format="json").status_code == 202
    assert Message.objects.get().priority == level


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"recipient": "ada"}, "recipient"),
        ({"surprise": 1}, "surprise"),
        ({"priority": 11}, "priority"),
        ({"notification_type": "pigeon"}, "notification_type"),
    ],
)
def test_mixed_unknown_or_bad_fields_are_a_400_naming_the_field(hng, change, field):
    response = hng.post("/api/v1/notifications", {**SEND, **change}, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["details"]["fields"]
    assert not Notification.objects.exists()


def test_an_unknown_template_or_user_sends_nothing(hng):
    for change in ({"template_code": "nope"}, {"user_id": "nobody"}):
        response = hng.post("/api/v1/notifications", {**SEND, **change}, format="json")
        assert 400 <= response.status_code < 500
        assert "error" in response.json()
    assert not Notification.objects.exists()


def test_outsider_tenant_reads_404(hng, outsider):
    notification_id = hng.post("/api/v1/notifications", SEND, format="json").json()["data"]["notification_id"]

    for path in (f"/api/v1/notifications/{notification_id}", "/api/v1/notifications/notif_not-a-uuid"):
        response = outsider.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_alertflow_own_send_is_unchanged(hng, tenant):
    body = {"recipient": USER_ID, "channels": ["email"], "template": "welcome_email", "data": {"name": "Ada"}}
    response = hng.post("/api/v1/notifications", body, format="json")

    assert response.status_code == 202
    notification_id = response.json()["id"]
    assert hng.get(f"/api/v1/notifications/{notification_id}").json()["id"] == notification_id


def test_user_preferences_read_and_write_the_recipients_channels(hng, smtp_server):
    path = f"/api/v1/users/{USER_ID}/preferences"
    body = hng.get(path).json()
    # HNG's fields (the answer also carries the Kafka service's `user_id` and `channels`).
    assert (body["success"], body["data"], body["message"]) == (
        True,
        {"email": True, "push": True},
        "Preferences retrieved successfully",
    )

    # The README's preference shape, from "1. Register a User".
    response = hng.put(path, {"email": False, "push": True}, format="json")

    assert response.status_code == 200
    assert response.json()["data"] == {"email": False, "push": True}
    assert hng.get(f"/api/v1/recipients/{USER_ID}/preferences").json()["channels"]["email"] is False
    refused = hng.post("/api/v1/notifications", SEND, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "preference_rejected"
    assert not smtp_server.messages


def test_user_preferences_refuse_unknown_fields_and_unknown_users(hng):
    path = f"/api/v1/users/{USER_ID}/preferences"
    response = hng.put(path, {"email": False, "sms": False}, format="json")

    assert response.status_code == 400
    assert "sms" in response.json()["error"]["details"]["fields"]
    assert hng.get("/api/v1/users/nobody/preferences").status_code == 404
    assert hng.get(path).json()["data"]["email"] is True


def test_outsider_tenant_gets_404_on_user_preferences(hng, outsider):
    path = f"/api/v1/users/{USER_ID}/preferences"

    assert outsider.get(path).status_code == 404
    assert outsider.put(path, {"email": False}, format="json").status_code == 404
    assert hng.get(path).json()["data"]["email"] is True


def test_the_readmes_login_then_bearer_token_flow_works(hng, tenant):
    """ "JWT Token Authentication": log in, then send with the token. A member of the tenant logs
    in at the same path with the same body; AlertFlow's session token stands for the JWT."""
    MembershipFactory(
        tenant=tenant, email="john@example.com", role=Role.ADMIN, password=make_password("SecurePass123!")
    )
    login = APIClient(headers={"Content-Type": "application/json"}).post(
        "/api/v1/auth/login", {"email": "john@example.com", "password": "SecurePass123!"}, format="json"
    )
    assert login.status_code == 200, login.content

    client = APIClient(headers={"Authorization": f"Bearer {login.json()['token']}", "Content-Type": "application/json"})
    response = client.post("/api/v1/notifications", SEND, format="json")

    assert response.status_code == 202
    assert client.get(f"/api/v1/notifications/{response.json()['data']['notification_id']}").status_code == 200
