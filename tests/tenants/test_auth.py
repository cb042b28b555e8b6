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


def test_a_cached_key_needs_no_query_and_revocation_still_takes_effect_at_once(
    tenant, owner, django_assert_num_queries
):
    from tenants import keys

    keys.clear()
    key, secret = api_key(tenant)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=secret)
    for _ in range(3):  # first sight, then the version-checked reload, then cached
        assert client.get("/api/v1/health/ready").status_code == 200
        assert client.get("/api/v1/categories").status_code == 200

    with django_assert_num_queries(1):  # the (empty) category list's count: no key lookup
        assert client.get("/api/v1/categories").status_code == 200

    assert owner.delete(f"/api/v1/api-keys/{key.pk}").status_code == 204
    assert client.get("/api/v1/categories").status_code == 401


def test_demoting_a_member_reaches_cached_sessions(tenant, owner):
    from tenants import keys
    from tests.factories import MembershipFactory

    keys.clear()
    membership = MembershipFactory(tenant=tenant, role="admin")
    _, secret = api_key(tenant, role="admin", membership=membership, kind="session")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=secret)
    for _ in range(3):
        assert client.post("/api/v1/categories", {"key": f"k{_}"}, format="json").status_code == 201

    owner.patch(f"/api/v1/members/{membership.pk}", {"role": "member"}, format="json")

    assert client.post("/api/v1/categories", {"key": "after"}, format="json").status_code == 403


@pytest.mark.django_db(transaction=True)  # no test transaction: the revocation commits as it does in production
def test_a_key_read_while_its_revocation_is_written_is_not_kept(tenant, owner):
    """DELETE /api-keys saves in autocommit, where the version bumps of `keys.changing` (the one
    before the write and the "after commit" one) both ran before the UPDATE: a request of another
    process reading the key between them and the UPDATE cached the live row under the final
    version, and let the revoked key in for up to keys.CACHE_SECONDS."""
    from django.db.models.signals import pre_save

    from tenants import keys
    from tenants.models import ApiKey
    from tests.tenants.test_key_writes_without_redis import cached_client

    key, secret = api_key(tenant)
    client = cached_client(secret)

    def concurrent_request(sender, instance, **kwargs):
        # Connected after tenants.signals: after the key's invalidation, before its UPDATE.
        if instance.pk == key.pk:
            assert keys.find(secret).revoked is None

    pre_save.connect(concurrent_request, sender=ApiKey, dispatch_uid="test.concurrent_request")
    try:
        assert owner.delete(f"/api/v1/api-keys/{key.pk}").status_code == 204
    finally:
        pre_save.disconnect(sender=ApiKey, dispatch_uid="test.concurrent_request")

    assert client.get("/api/v1/categories").status_code == 401
