"""HTTP edges at the Django level: chunked bodies, error shapes under DEBUG, key expiry.

The same edges through gunicorn itself are in test_http_server_edges.py.
"""

import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from preferences.models import Recipient
from tenants.models import ApiKey

pytestmark = pytest.mark.django_db
BODY = b'{"email": "chunky@example.com"}'


def put_chunked(client, path, body, **environ):
    """A request as gunicorn hands it over: `Transfer-Encoding: chunked` and no Content-Length."""
    return client.generic(
        "PUT",
        path,
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": io.BytesIO(body), **environ},
    )


def test_chunked_body_is_read_when_the_server_delimits_it(owner, tenant):
    response = put_chunked(owner, "/api/v1/recipients/chunky", BODY, **{"wsgi.input_terminated": True})

    assert response.status_code == 201
    assert Recipient.objects.get(tenant=tenant, external_id="chunky").email == "chunky@example.com"


def test_chunked_body_the_server_cannot_delimit_is_411_and_writes_nothing(owner, tenant):
    response = put_chunked(owner, "/api/v1/recipients/chunky", BODY)

    assert response.status_code == 411
    assert response.json()["error"]["code"] == "length_required"
    assert not Recipient.objects.filter(tenant=tenant).exists()


def test_chunked_body_over_the_limit_is_413(owner, tenant, settings):
    settings.ALERTFLOW_MAX_BODY_BYTES = 10

    response = put_chunked(owner, "/api/v1/recipients/chunky", BODY, **{"wsgi.input_terminated": True})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Recipient.objects.filter(tenant=tenant).exists()


def test_outsider_chunked_put_touches_nothing_of_the_tenant(outsider, tenant):
    Recipient.objects.create(tenant=tenant, external_id="chunky", email="kept@example.com")

    response = put_chunked(outsider, "/api/v1/recipients/chunky", BODY, **{"wsgi.input_terminated": True})

    assert response.status_code in (200, 201)  # the outsider's own recipient of that id
    assert Recipient.objects.get(tenant=tenant, external_id="chunky").email == "kept@example.com"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/v1/no-such-thing", 404, "not_found"),
        ("get", "/api/v1/recipients/a%2Fb", 404, "not_found"),
        ("get", "/api/v1/recipients/a%2Fb/preferences", 404, "not_found"),
        ("get", "/no-such-thing", 404, "not_found"),
        ("get", "/register/extra", 404, "not_found"),
        ("put", "/api/v1/health", 405, "method_not_allowed"),
    ],
)
def test_errors_keep_the_json_shape_under_debug(owner, settings, method, path, status, code):
    settings.DEBUG = True

    response = getattr(owner, method)(path)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert "X-Request-ID" in response


def test_the_admin_keeps_its_own_pages_under_debug(client, settings):
    settings.DEBUG = True
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))

    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/tenants/tenant/").status_code == 200


def test_new_api_key_expiring_in_the_past_is_400(owner, tenant):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()

    response = owner.post("/api/v1/api-keys", {"name": "late", "expires": past}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "expires" in response.json()["error"]["details"]["fields"]
    assert "past" in response.json()["error"]["message"]
    assert not ApiKey.objects.filter(tenant=tenant, name="late").exists()


def test_new_api_key_expiring_in_the_future_is_created(owner):
    future = (timezone.now() + timedelta(days=30)).isoformat()

    response = owner.post("/api/v1/api-keys", {"name": "later", "expires": future}, format="json")

    assert response.status_code == 201
