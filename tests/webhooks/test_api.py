"""GET/POST /api/v1/webhooks, GET/PATCH/DELETE .../{id}, rotate-secret, deliveries, replay, test:
tenant-scoped (an outsider gets 404), admins only, errors in the one shape."""

import uuid

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from delivery.webhooks.models import WebhookDelivery, WebhookEndpoint

from .conftest import subscribe

pytestmark = pytest.mark.django_db

URL = "https://example.com/alertflow-hooks"


def test_the_secret_is_shown_once_at_create(admin):
    created = subscribe(admin, URL, ["message.failed", "message.delivered", "message.failed"])

    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["events"] == ["message.delivered", "message.failed"]
    assert (created["enabled"], created["disabled_reason"], created["previous_secret_expires"]) == (True, "", None)
    shown = admin.get(f"/api/v1/webhooks/{created['id']}").json()
    assert shown["secret"] is None
    assert admin.get("/api/v1/webhooks").json()["results"][0]["secret"] is None
    # Stored encrypted, not in clear.
    assert created["secret"] not in WebhookEndpoint.objects.get().secrets


def test_an_outsider_gets_404_everywhere(admin, outsider):
    created = subscribe(admin, URL, ["message.failed"])
    base = f"/api/v1/webhooks/{created['id']}"
    delivery = WebhookDelivery.objects.create(
        tenant_id=WebhookEndpoint.objects.get().tenant_id,
        endpoint_id=created["id"],
        event=_event(created),
        event_type="message.failed",
        status="failed",
    )

    assert outsider.get("/api/v1/webhooks").json()["count"] == 0
    for method, path in [
        ("get", base),
        ("patch", base),
        ("delete", base),
        ("post", f"{base}/rotate-secret"),
        ("get", f"{base}/deliveries"),
        ("post", f"{base}/deliveries/{delivery.pk}/replay"),
        ("post", f"{base}/replay"),
        ("post", f"{base}/test"),
    ]:
        response = getattr(outsider, method)(path, {}, format="json")
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    assert WebhookEndpoint.objects.get().enabled
    assert WebhookDelivery.objects.get().status == "failed"


def _event(created):
    from delivery.webhooks.models import WebhookEvent

    return WebhookEvent.objects.create(
        tenant_id=WebhookEndpoint.objects.get(pk=created["id"]).tenant_id, type="message.failed", payload={}
    )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://169.254.169.254/latest", "http://localhost/x", "http://10.0.0.7/"]
)
def test_a_url_on_our_network_is_refused_at_save(admin, url):
    response = admin.post("/api/v1/webhooks", {"url": url, "events": ["message.sent"]}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "address_not_allowed"
    assert response.json()["error"]["details"] == {"field": "url"}
    assert not WebhookEndpoint.objects.exists()


def test_a_patch_to_a_private_url_is_refused_and_changes_nothing(admin):
    created = subscribe(admin, URL, ["message.sent"])

    response = admin.patch(f"/api/v1/webhooks/{created['id']}", {"url": "http://192.168.1.1/"}, format="json")

    assert response.json()["error"]["code"] == "address_not_allowed"
    assert WebhookEndpoint.objects.get().url == URL


@pytest.mark.parametrize(
    "body",
    [
        {"url": URL, "events": []},
        {"url": URL, "events": ["message.exploded"]},
        {"url": URL, "events": ["webhook.ping"]},
        {"url": "ftp://example.com/x", "events": ["message.sent"]},
        {"events": ["message.sent"]},
    ],
)
def test_bad_input_is_a_400_with_the_field(admin, body):
    response = admin.post("/api/v1/webhooks", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("validation_error", "address_not_allowed")
    assert not WebhookEndpoint.objects.exists()


def test_a_member_may_not_read_or_write_webhooks(member):
    assert member.get("/api/v1/webhooks").status_code == 403
    assert member.post("/api/v1/webhooks", {"url": URL, "events": ["message.sent"]}, format="json").status_code == 403


def test_rotate_shows_the_new_secret_once_and_the_overlap_end(admin):
    created = subscribe(admin, URL, ["message.sent"])

    response = admin.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", {}, format="json")

    body = response.json()
    assert response.status_code == 200 and body["secret"] != created["secret"]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.signing_secrets() == [body["secret"], created["secret"]]
    hours = (endpoint.previous_expires - timezone.now()).total_seconds() / 3600
    assert 23.9 < hours <= 24
    assert admin.get(f"/api/v1/webhooks/{created['id']}").json()["secret"] is None
    bad = admin.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", {"overlap_seconds": -1}, format="json")
    assert bad.status_code == 400


def test_rotate_without_overlap_retires_the_old_secret_at_once(admin):
    created = subscribe(admin, URL, ["message.sent"])

    body = admin.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", {"overlap_seconds": 0}, format="json").json()

    assert WebhookEndpoint.objects.get().signing_secrets() == [body["secret"]]


def test_deliveries_are_listed_with_their_attempts_and_filtered(admin):
    created = subscribe(admin, URL, ["message.failed", "message.sent"])
    endpoint = WebhookEndpoint.objects.get()
    failed = WebhookDelivery.objects.create(
        tenant_id=endpoint.tenant_id, endpoint=endpoint, event=_event(created), event_type="message.failed",
        status="failed",
    )  # fmt: skip
    failed.attempt_log.create(status_code=500, error="HTTP 500", response="oops", duration_ms=12)
    base = f"/api/v1/webhooks/{created['id']}/deliveries"

    [listed] = admin.get(base, {"status": "failed"}).json()["results"]
    assert listed["id"] == str(failed.pk) and listed["event_type"] == "message.failed"
    assert listed["attempt_log"] == [
        {"started": listed["attempt_log"][0]["started"], "duration_ms": 12, "status_code": 500, "response": "oops",
         "error": "HTTP 500"}
    ]  # fmt: skip
    assert admin.get(base, {"status": "delivered"}).json()["count"] == 0
    assert admin.get(base, {"event_type": "message.sent"}).json()["count"] == 0
    bad = admin.get(base, {"status": "exploded"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"


def test_replaying_an_unknown_delivery_is_a_404(admin):
    created = subscribe(admin, URL, ["message.sent"])

    response = admin.post(f"/api/v1/webhooks/{created['id']}/deliveries/{uuid.uuid4()}/replay")

    assert response.status_code == 404


def test_replay_and_ping_on_a_disabled_endpoint_are_a_409(admin):
    created = subscribe(admin, URL, ["message.sent"])
    admin.patch(f"/api/v1/webhooks/{created['id']}", {"enabled": False}, format="json")

    for path in ("replay", "test"):
        response = admin.post(f"/api/v1/webhooks/{created['id']}/{path}", {}, format="json")
        assert (response.status_code, response.json()["error"]["code"]) == (409, "endpoint_disabled")


def test_delete_removes_the_endpoint_and_its_deliveries(admin):
    created = subscribe(admin, URL, ["message.sent"])
    admin.post(f"/api/v1/webhooks/{created['id']}/test")

    assert admin.delete(f"/api/v1/webhooks/{created['id']}").status_code == 204

    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


def test_rotate_after_the_encryption_keys_changed_gives_a_working_secret(admin, settings):
    created = subscribe(admin, URL, ["message.sent"])
    settings.ALERTFLOW_ENCRYPTION_KEY = [Fernet.generate_key().decode()]  # the old key is gone

    response = admin.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", {}, format="json")

    assert response.status_code == 200 and response.json()["previous_secret_expires"] is None
    assert WebhookEndpoint.objects.get().signing_secrets() == [response.json()["secret"]]
