import pytest
from rest_framework.test import APIClient

from tenants.models import Membership
from tests.factories import PASSWORD, MembershipFactory, TenantFactory

pytestmark = pytest.mark.django_db


def login(email, password=PASSWORD, **extra):
    return APIClient().post("/api/v1/auth/login", {"email": email, "password": password, **extra}, format="json")


def test_invited_person_sets_password_and_logs_in_with_their_role(owner, tenant):
    invited = owner.post("/api/v1/members", {"email": "Ada@Example.com", "role": "admin"}, format="json")
    assert invited.status_code == 201
    assert invited.json()["email"] == "ada@example.com"

    accepted = APIClient().post(
        "/api/v1/auth/accept-invite", {"token": invited.json()["invite_token"], "password": PASSWORD}, format="json"
    )
    assert accepted.status_code == 200

    response = login("ada@example.com")
    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    assert response.json()["tenant"] == str(tenant.pk)
    session = APIClient()
    session.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    assert session.post("/api/v1/categories", {"key": "x"}, format="json").status_code == 201
    assert session.get("/api/v1/api-keys").status_code == 403


def test_invite_token_cannot_be_used_twice(owner):
    token = owner.post("/api/v1/members", {"email": "a@example.com"}, format="json").json()["invite_token"]
    body = {"token": token, "password": PASSWORD}
    assert APIClient().post("/api/v1/auth/accept-invite", body, format="json").status_code == 200

    response = APIClient().post("/api/v1/auth/accept-invite", body, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invite_used"


def test_forged_invite_token_is_400():
    response = APIClient().post("/api/v1/auth/accept-invite", {"token": "forged", "password": PASSWORD}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invite_invalid"


def test_weak_password_is_refused(owner):
    token = owner.post("/api/v1/members", {"email": "a@example.com"}, format="json").json()["invite_token"]

    response = APIClient().post("/api/v1/auth/accept-invite", {"token": token, "password": "123"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "weak_password"


def test_inviting_a_member_twice_is_400(owner, tenant):
    MembershipFactory(tenant=tenant, email="a@example.com")

    response = owner.post("/api/v1/members", {"email": "A@example.com"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "already_member"


def test_wrong_password_is_401():
    membership = MembershipFactory()

    response = login(membership.email, "wrong password")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_login_with_several_tenants_needs_one_named():
    first = MembershipFactory(email="both@example.com", role="member")
    MembershipFactory(email="both@example.com", role="owner")

    ambiguous = login("both@example.com")
    chosen = login("both@example.com", tenant=str(first.tenant_id))

    assert ambiguous.status_code == 400
    assert ambiguous.json()["error"]["code"] == "tenant_required"
    assert len(ambiguous.json()["error"]["details"]["tenants"]) == 2
    assert chosen.json()["role"] == "member"


def test_session_follows_role_changes(owner, tenant):
    membership = MembershipFactory(tenant=tenant, role="admin")
    session = APIClient()
    session.credentials(HTTP_AUTHORIZATION=f"Bearer {login(membership.email).json()['token']}")

    assert owner.patch(f"/api/v1/members/{membership.pk}", {"role": "member"}, format="json").status_code == 200

    assert session.post("/api/v1/categories", {"key": "x"}, format="json").status_code == 403


def test_removed_member_session_stops_working(owner, tenant):
    membership = MembershipFactory(tenant=tenant, role="admin")
    token = login(membership.email).json()["token"]

    assert owner.delete(f"/api/v1/members/{membership.pk}").status_code == 204

    assert APIClient().get("/api/v1/categories", HTTP_X_API_KEY=token).status_code == 401


def test_last_owner_cannot_be_demoted_or_removed(owner, tenant):
    last = MembershipFactory(tenant=tenant, role="owner")

    demote = owner.patch(f"/api/v1/members/{last.pk}", {"role": "admin"}, format="json")
    remove = owner.delete(f"/api/v1/members/{last.pk}")

    assert demote.status_code == 409
    assert demote.json()["error"]["code"] == "last_owner"
    assert remove.status_code == 409
    last.refresh_from_db()
    assert last.role == "owner"


def test_an_owner_can_step_down_when_another_owner_exists(owner, tenant):
    first = MembershipFactory(tenant=tenant, role="owner")
    MembershipFactory(tenant=tenant, role="owner")

    response = owner.patch(f"/api/v1/members/{first.pk}", {"role": "member"}, format="json")

    assert response.status_code == 200


def test_invalid_role_in_patch_is_400(owner, tenant):
    membership = MembershipFactory(tenant=tenant)

    assert owner.patch(f"/api/v1/members/{membership.pk}", {"role": "god"}, format="json").status_code == 400


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_outsider_gets_404_on_member(outsider, tenant, method):
    membership = MembershipFactory(tenant=tenant, role="admin")

    response = getattr(outsider, method)(f"/api/v1/members/{membership.pk}", {"role": "member"}, format="json")

    assert response.status_code == 404
    assert Membership.objects.filter(pk=membership.pk, role="admin").exists()


def test_members_of_other_tenants_are_not_listed(outsider, tenant):
    MembershipFactory(tenant=tenant)
    MembershipFactory(tenant=TenantFactory())

    assert outsider.get("/api/v1/members").json()["count"] == 0
