import pytest
from rest_framework.test import APIClient

from tenants.models import ApiKey
from tests.factories import api_key

pytestmark = pytest.mark.django_db


def test_created_key_is_shown_once_and_works(owner, tenant):
    response = owner.post("/api/v1/api-keys", {"name": "ci", "role": "member"}, format="json")

    assert response.status_code == 201
    secret = response.json()["key"]
    assert secret.startswith("af_")
    key = ApiKey.objects.get(pk=response.json()["id"])
    assert key.hashed == ApiKey.hash(secret)
    listed = owner.get("/api/v1/api-keys").json()["results"]
    assert all("key" not in item and "hashed" not in item for item in listed)
    assert APIClient().get("/api/v1/categories", HTTP_X_API_KEY=secret).status_code == 200


def test_key_role_limits_what_it_can_do(owner):
    secret = owner.post("/api/v1/api-keys", {"name": "ro", "role": "member"}, format="json").json()["key"]

    response = APIClient().post("/api/v1/categories", {"key": "x"}, format="json", HTTP_X_API_KEY=secret)

    assert response.status_code == 403


def test_revoke_keeps_row_for_audit(owner, tenant):
    key, _ = api_key(tenant)

    assert owner.delete(f"/api/v1/api-keys/{key.pk}").status_code == 204

    key.refresh_from_db()
    assert key.revoked is not None


def test_invalid_role_is_400(owner):
    response = owner.post("/api/v1/api-keys", {"name": "x", "role": "root"}, format="json")

    assert response.status_code == 400


def test_outsider_cannot_revoke_or_see_keys(outsider, tenant):
    key, _ = api_key(tenant)

    assert outsider.delete(f"/api/v1/api-keys/{key.pk}").status_code == 404
    assert outsider.get("/api/v1/api-keys").json()["count"] == 1  # only its own key
    key.refresh_from_db()
    assert key.revoked is None
