"""Webhook URLs are https outside development (settings.ALERTFLOW_WEBHOOK_ALLOW_HTTP, on under
DEBUG): events carry recipients' ids, statuses and suppressed addresses, which must not travel
in clear. An http URL is a 400 `https_required` when saved, and an http endpoint saved while
http was allowed gets nothing once it is not."""

import pytest

from delivery.webhooks import relay
from delivery.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

from .conftest import subscribe

pytestmark = pytest.mark.django_db

PUBLIC_HTTP = "http://example.com/alertflow-hooks"  # a public address: the outbound guard lets it be


def test_an_http_url_is_refused_at_save(admin):
    response = admin.post("/api/v1/webhooks", {"url": PUBLIC_HTTP, "events": ["message.sent"]}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "https_required"
    assert response.json()["error"]["details"] == {"field": "url"}
    assert not WebhookEndpoint.objects.exists()


def test_a_patch_to_an_http_url_is_refused_and_changes_nothing(admin):
    created = subscribe(admin, "https://example.com/alertflow-hooks", ["message.sent"])

    response = admin.patch(f"/api/v1/webhooks/{created['id']}", {"url": PUBLIC_HTTP}, format="json")

    assert (response.status_code, response.json()["error"]["code"]) == (400, "https_required")
    assert WebhookEndpoint.objects.get().url == "https://example.com/alertflow-hooks"


def test_an_http_url_is_taken_where_http_is_allowed(admin, settings):
    settings.ALERTFLOW_WEBHOOK_ALLOW_HTTP = True  # DEBUG's default: `make run`

    response = admin.post("/api/v1/webhooks", {"url": PUBLIC_HTTP, "events": ["message.sent"]}, format="json")

    assert response.status_code == 201, response.content


def test_the_outbound_guard_still_answers_first_for_a_private_http_url(admin):
    response = admin.post("/api/v1/webhooks", {"url": "http://10.0.0.7/", "events": ["message.sent"]}, format="json")

    assert response.json()["error"]["code"] == "address_not_allowed"


def test_an_http_endpoint_saved_while_allowed_gets_nothing_once_it_is_not(admin, webhook_receiver, settings):
    created = subscribe(admin, webhook_receiver.endpoint, ["message.sent"])  # http://127.0.0.1:...
    assert admin.post(f"/api/v1/webhooks/{created['id']}/test", {}, format="json").status_code in (200, 201, 202)
    settings.ALERTFLOW_WEBHOOK_ALLOW_HTTP = False

    relay.relay_due()

    assert webhook_receiver.posts() == []
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.error.startswith("https_required")
    assert WebhookDelivery.objects.get().status == "pending"  # retried later, as any failed attempt
