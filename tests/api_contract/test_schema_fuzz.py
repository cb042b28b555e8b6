"""Property-based test of the whole API against its own OpenAPI schema (schemathesis).

Every operation in /api/schema gets generated requests, valid and invalid, sent in-process to
the WSGI app on real PostgreSQL as the owner of a tenant that has one object of each kind, so
path ids can name real objects and operations get past 404 (the inbox's operations are called
with that tenant's recipient's token). Each response must:
- not be a 5xx;
- have a status the schema documents for that operation;
- match the documented body schema and content type for that status.

The tenant's objects are written through the API before each operation's run, and every
generated request runs inside a savepoint that is rolled back after it: each request meets the
same objects (a DELETE does not leave the next request a 404), and a request that breaks its
transaction cannot break the next one.
"""

import json

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alertflow.choices import Role
from notifications.models import Message
from tests.factories import TenantFactory, api_key
from tests.inbox.conftest import send_inapp

# Generated cases per operation, on top of schemathesis' deterministic coverage cases (boundary
# values, missing and malformed fields, unexpected methods: about 35 per operation), so ~45
# requests per operation in all. More finds little more and costs the whole suite's time.
EXAMPLES_PER_OPERATION = 10

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# The ids of the objects `credentials` made, by path parameter name (`id` by collection).
REAL_IDS: dict[str, str] = {}


def served_schema() -> dict:
    """The document /api/schema serves, made by the same generator and read back as plain JSON."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


schema = schemathesis.openapi.from_dict(served_schema())
schema.app = WSGIHandler()


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


def real_path_parameters(path: str, generated: dict) -> dict:
    """`generated` with each parameter that names a real object of this collection replaced."""
    collection = path.removeprefix("/api/v1/").split("/")[0]
    real = dict(generated)
    for name in generated:
        value = REAL_IDS.get(f"{name}:{collection}", REAL_IDS.get(name))
        if value is not None:
            real[name] = value
    return real


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    # Half the cases name real objects (to reach the operation's logic), half keep the generated
    # ids (to reach its 404s and its input checks).
    if not path_parameters:
        return st.just(path_parameters)
    path = context.operation.path
    return st.one_of(st.just(path_parameters), st.builds(lambda: real_path_parameters(path, path_parameters)))


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure report is enough
    suppress_health_check=list(HealthCheck),
)
def test_every_response_is_documented_and_not_a_server_error(case, credentials):
    [scheme] = case.operation.definition.raw.get("security", [{"ApiKey": []}])[0] or ["ApiKey"]
    savepoint = transaction.savepoint()
    try:
        response = case.call(headers={"Authorization": f"Bearer {credentials[scheme]}"})
    finally:
        transaction.savepoint_rollback(savepoint)
    case.validate_response(response, checks=CHECKS)
