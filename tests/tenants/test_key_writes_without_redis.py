"""Revoking a key, changing a member or a tenant is refused when Redis cannot hear of it
(tenants.keys.KeysUnavailable, the refusal preferences and suppressions give too): committed
unheard, every process that had cached the key and still reads the old version from Redis let
the revoked key in for up to keys.CACHE_SECONDS."""

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from tenants import keys
from tenants.models import ApiKey, Membership
from tests.factories import PASSWORD, MembershipFactory, api_key

pytestmark = pytest.mark.django_db

PBKDF2 = "django.contrib.auth.hashers.PBKDF2PasswordHasher"


def redis_unreachable():
    """This process's Redis out of reach (nothing listens on port 1); others may still read it."""
    return override_settings(REDIS_URL="redis://127.0.0.1:1/0")


def assert_refused(response) -> None:
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "keys_unavailable"


def cached_client(secret: str) -> APIClient:
    keys.clear()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=secret)
    for _ in range(3):  # first sight, then the version-checked reload, then cached
        assert client.get("/api/v1/categories").status_code == 200
    return client


def test_a_revoke_redis_cannot_hear_of_is_a_503_and_the_key_stays_live(owner, tenant, outsider):
    key, secret = api_key(tenant)
    client = cached_client(secret)
    with redis_unreachable():
        assert_refused(owner.delete(f"/api/v1/api-keys/{key.pk}"))
        assert outsider.delete(f"/api/v1/api-keys/{key.pk}").status_code == 404  # never another tenant's
    key.refresh_from_db()
    assert key.revoked is None

    # Redis back: the retry revokes, and the process that had cached the key refuses it at once.
    assert owner.delete(f"/api/v1/api-keys/{key.pk}").status_code == 204
    assert client.get("/api/v1/categories").status_code == 401


def test_a_role_change_redis_cannot_hear_of_is_a_503_and_writes_nothing(owner, tenant):
    membership = MembershipFactory(tenant=tenant, role="admin")
    with redis_unreachable():
        assert_refused(owner.patch(f"/api/v1/members/{membership.pk}", {"role": "member"}, format="json"))
    assert Membership.objects.get(pk=membership.pk).role == "admin"


def test_a_new_key_needs_no_redis(owner):
    with redis_unreachable():
        response = owner.post("/api/v1/api-keys", {"name": "ci", "role": "member"}, format="json")
    assert response.status_code == 201  # nothing could have cached a key that did not exist


def test_the_admins_revoke_action_shows_the_refusal_and_revokes_nothing(client, tenant):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    key, _ = api_key(tenant)
    with redis_unreachable():
        response = client.post(
            reverse("admin:tenants_apikey_changelist"), {"action": "revoke", "_selected_action": [key.pk]}, follow=True
        )
    assert response.status_code == 200
    assert "cannot be written while Redis is unreachable" in response.content.decode()
    assert ApiKey.objects.get(pk=key.pk).revoked is None


def test_a_password_needs_no_redis_accepting_an_invitation_or_upgraded_at_a_login(owner, tenant):
    """A cached key reads no password: setting one (an invitation accepted) or re-hashing it at a
    login (a hasher with more iterations after an upgrade of Django) was refused as a key change
    while Redis was unreachable, so every such login and acceptance failed with a 503."""
    token = owner.post("/api/v1/members", {"email": "ada@example.com"}, format="json").json()["invite_token"]
    with redis_unreachable():
        body = {"token": token, "password": PASSWORD}
        assert APIClient().post("/api/v1/auth/accept-invite", body, format="json").status_code == 200

    grace = MembershipFactory(tenant=tenant, email="grace@example.com")
    # Hashed by a hasher the deployment accepts but no longer prefers: the login re-hashes it.
    grace.password = PBKDF2PasswordHasher().encode(PASSWORD, "salt", iterations=1)
    grace.save()
    with redis_unreachable():
        body = {"email": "grace@example.com", "password": PASSWORD}
        with override_settings(PASSWORD_HASHERS=[*settings.PASSWORD_HASHERS, PBKDF2]):
            assert APIClient().post("/api/v1/auth/login", body, format="json").status_code == 200
    grace.refresh_from_db()
    assert not grace.password.startswith("pbkdf2")  # upgraded
