"""The contract tests' shared part: the tenant with one object of every kind (`credentials`),
the ids of those objects, and the node ids of schemathesis' items."""

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.test import APIClient
from schemathesis.pytest.plugin import SchemathesisFunction

from alertflow.choices import Role
from notifications.models import Message
from tests.factories import TenantFactory, api_key
from tests.inbox.conftest import send_inapp

# The ids of the objects `credentials` made, by path parameter name (`id` by collection).
REAL_IDS: dict[str, str] = {}


def pytest_collection_modifyitems(items):
    """Give each operation's test its own node id: `test_...[GET /api/v1/recipients/]`.

    schemathesis 4.32 names the items that way but hands pytest 9 the bare function name to build
    the node id from, so all of them share one id, and pytest-xdist, which schedules and reports
    by id, runs and reports only one of them.
    """
    for item in items:
        if isinstance(item, SchemathesisFunction) and item.nodeid.endswith("::" + item.originalname):
            item._id = item.parent.id.child(item.originalname).with_params(item.operation_label)


@pytest.fixture
def credentials(db, settings) -> dict[str, str]:
    """By security scheme, the credential of a tenant that has one object of every kind (made
    through the API): its owner's API key, and its recipient's token for the inbox."""
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]  # the Host schemathesis sends in-process
    tenant = TenantFactory(name="Fuzzed")
    secret = api_key(tenant, Role.OWNER)[1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    def made(path, body, method="post"):
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code in (200, 201, 202), (path, response.content)
        return response.json()

    made("/api/v1/categories", {"key": "alerts", "name": "Alerts", "channels": ["email", "sms"]})
    made("/api/v1/recipients/ada", {"email": "ada@example.com", "phone": "+14155552671", "name": "Ada"}, "put")
    device = made("/api/v1/recipients/ada/devices", {"platform": "fcm", "token": "fcm-token-ada"})
    made("/api/v1/templates", {"code": "welcome", "channels": {"email": {"subject": "Hi", "text": "Hi {{ name }}"}}})
    made("/api/v1/topics", {"key": "news", "name": "News"})
    made("/api/v1/topics/news/subscribers", {"recipients": ["ada"]})
    provider = made(
        "/api/v1/providers",
        {"channel": "sms", "kind": "console", "name": "console-sms", "config": {}},
    )
    notification = made(
        "/api/v1/notifications",
        {"recipient": "ada", "category": "alerts", "template": "welcome", "channels": ["email"]},
    )
    message = Message.objects.get(notification_id=notification["id"])
    Message.objects.filter(pk=message.pk).update(status=Message.Status.FAILED)  # so retry can succeed
    inbox_message = send_inapp(client)  # delivered: an item in ada's inbox
    recipient_token = made("/api/v1/recipients/ada/token", {})["token"]
    member = made("/api/v1/members", {"email": "grace@example.com", "role": "member"})
    other_key = made("/api/v1/api-keys", {"name": "spare", "role": "member"})
    webhook = made("/api/v1/webhooks", {"url": "https://example.com/hooks", "events": ["message.failed"]})
    webhook_delivery = made(f"/api/v1/webhooks/{webhook['id']}/test", {})

    REAL_IDS.clear()
    REAL_IDS.update(
        {
            "key:categories": "alerts",
            "key:topics": "news",
            "external_id": "ada",
            "device_id": str(device["id"]),
            "code": "welcome",
            "id:providers": str(provider["id"]),
            "id:notifications": str(notification["id"]),
            "id:messages": str(message.pk),
            "id:members": str(member["id"]),
            "id:api-keys": str(other_key["id"]),
            "message_id": inbox_message,
            "id:webhooks": str(webhook["id"]),
            "delivery_id": str(webhook_delivery["id"]),
        }
    )
    # Like Django's test client: the end of a request must not close the test's connection, which
    # holds the uncommitted test data. (APIClient reconnects these after each of its requests.)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield {"ApiKey": secret, "RecipientToken": recipient_token}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
