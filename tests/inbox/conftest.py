import pytest
from rest_framework.test import APIClient

from delivery import pipeline
from delivery.inbox_auth import issue_token
from notifications.models import Message
from tests.factories import RecipientFactory


@pytest.fixture
def ada(tenant):
    return RecipientFactory(tenant=tenant, external_id="ada", name="Ada")


@pytest.fixture
def bob(tenant):
    """Another recipient of the same tenant: must see none of Ada's items."""
    return RecipientFactory(tenant=tenant, external_id="bob", name="Bob")


@pytest.fixture
def stranger(outsider_tenant):
    """A recipient of another tenant, with Ada's external id."""
    return RecipientFactory(tenant=outsider_tenant, external_id="ada", name="Not Ada")


def reader_client(recipient) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(recipient)[0]}")
    return client


@pytest.fixture
def ada_inbox(ada):
    return reader_client(ada)


def send_inapp(client, recipient="ada", title="Hello", body="Body", action_url="https://app.test/x", **extra) -> str:
    """Accept an in-app send through the API and deliver it as a worker would; return its id."""
    content = {"inapp": {"title": title, "body": body, "action_url": action_url, "data": {"k": "v"}}}
    payload = {"recipient": recipient, "channels": ["inapp"], "content": content, **extra}
    response = client.post("/api/v1/notifications", payload, format="json")
    assert response.status_code == 202, response.content
    [message_id] = Message.objects.filter(notification_id=response.json()["id"]).values_list("id", flat=True)
    pipeline.deliver([message_id])
    return str(message_id)
