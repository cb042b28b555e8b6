from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import TenantFactory, api_key

pytestmark = pytest.mark.django_db


def test_bearer_header_authenticates(tenant):
    _, secret = api_key(tenant)

    response = APIClient().get("/api/v1/categories", HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert response.status_code == 200


def test_x_api_key_header_authenticates(tenant):
    _, secret = api_key(tenant)

    response = APIClient().get("/api/v1/categories", HTTP_X_API_KEY=secret)

    assert response.status_code == 200


def test_missing_key_is_401_with_error_shape(anonymous):
    response = anonymous.get("/api/v1/categories")

    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "unauthorized", "message": "Authentication credentials were not provided.", "details": {}}
    }
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer af_unknown", "Basic dXNlcjpwYXNz", "Bearer"])
def test_unknown_or_malformed_key_is_401(anonymous, header):
    response = anonymous.get("/api/v1/categories", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_revoked_key_is_401(tenant, owner):
    key, secret = api_key(tenant)
    assert owner.delete(f"/api/v1/api-keys/{key.pk}").status_code == 204

    response = APIClient().get("/api/v1/categories", HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert response.status_code == 401


def test_expired_key_is_401(tenant):
    _, secret = api_key(tenant, expires=timezone.now() - timedelta(seconds=1))

    response = APIClient().get("/api/v1/categories", HTTP_X_API_KEY=secret)

    assert response.status_code == 401


def test_key_of_deactivated_tenant_is_401():
    tenant = TenantFactory(active=False)
    _, secret = api_key(tenant)

    response = APIClient().get("/api/v1/categories", HTTP_X_API_KEY=secret)

    assert response.status_code == 401


def test_use_records_last_used(tenant):
    key, secret = api_key(tenant)

    APIClient().get("/api/v1/categories", HTTP_X_API_KEY=secret)

    key.refresh_from_db()
    assert key.last_used is not None
