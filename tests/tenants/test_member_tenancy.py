"""Member identities belong to one tenant: another tenant (`outsider`) can neither set nor learn them."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db
VICTIM_PASSWORD = "victim's own long passphrase"
ATTACKER_PASSWORD = "attacker chose this passphrase"


def accept(token, password):
    return APIClient().post("/api/v1/auth/accept-invite", {"token": token, "password": password}, format="json")


def login(email, password, tenant=None):
    body = {"email": email, "password": password}
    if tenant is not None:
        body["tenant"] = str(tenant.pk)
    return APIClient().post("/api/v1/auth/login", body, format="json")


def test_another_tenant_cannot_take_over_a_pending_invitation(owner, outsider, tenant):
    invited_by_a = owner.post("/api/v1/members", {"email": "victim@example.com", "role": "admin"}, format="json")
    assert invited_by_a.status_code == 201

    # B invites the same person, accepts its own invitation and sets a password...
    invited_by_b = outsider.post("/api/v1/members", {"email": "victim@example.com"}, format="json")
    assert invited_by_b.status_code == 201
    assert accept(invited_by_b.json()["invite_token"], ATTACKER_PASSWORD).status_code == 200

    # ...which opens nothing in A.
    attack = login("victim@example.com", ATTACKER_PASSWORD, tenant=tenant)
    assert attack.status_code == 401
    assert attack.json()["error"]["code"] == "invalid_credentials"

    # A's invitation is still the victim's to accept, and the victim's login reaches A alone.
    assert accept(invited_by_a.json()["invite_token"], VICTIM_PASSWORD).status_code == 200
    own = login("victim@example.com", VICTIM_PASSWORD)
    assert own.status_code == 200
    assert own.json()["tenant"] == str(tenant.pk)
    assert own.json()["role"] == "admin"
    assert login("victim@example.com", VICTIM_PASSWORD, tenant=tenant).status_code == 200


def test_another_tenant_cannot_set_the_password_of_an_accepted_member(owner, outsider, tenant, outsider_tenant):
    token_a = owner.post("/api/v1/members", {"email": "victim@example.com"}, format="json").json()["invite_token"]
    assert accept(token_a, VICTIM_PASSWORD).status_code == 200

    invited_by_b = outsider.post("/api/v1/members", {"email": "Victim@Example.com"}, format="json")
    assert invited_by_b.status_code == 201
    assert accept(invited_by_b.json()["invite_token"], ATTACKER_PASSWORD).status_code == 200

    assert login("victim@example.com", ATTACKER_PASSWORD, tenant=tenant).status_code == 401
    # The person's own login keeps working without naming a tenant, and B's identity is B's.
    own = login("victim@example.com", VICTIM_PASSWORD)
    assert own.status_code == 200
    assert own.json()["tenant"] == str(tenant.pk)
    assert login("victim@example.com", ATTACKER_PASSWORD).json()["tenant"] == str(outsider_tenant.pk)


def test_invite_response_reveals_nothing_about_other_tenants(owner, outsider):
    owner.post("/api/v1/members", {"email": "known@example.com", "name": "Known Person"}, format="json")
    token_a = owner.post("/api/v1/members", {"email": "accepted@example.com", "name": "Accepted"}, format="json").json()
    assert accept(token_a["invite_token"], VICTIM_PASSWORD).status_code == 200

    fresh = outsider.post("/api/v1/members", {"email": "nobody@example.com"}, format="json").json()
    pending = outsider.post("/api/v1/members", {"email": "known@example.com"}, format="json").json()
    accepted = outsider.post("/api/v1/members", {"email": "accepted@example.com"}, format="json").json()

    for body in (pending, accepted):
        assert body["name"] == ""
        assert isinstance(body["invite_token"], str)
        assert set(body) == set(fresh)


def test_a_member_listed_in_one_tenant_keeps_the_profile_that_tenant_gave(owner, outsider):
    owner.post("/api/v1/members", {"email": "p@example.com", "name": "Name From A"}, format="json")
    outsider.post("/api/v1/members", {"email": "p@example.com", "name": "Name From B"}, format="json")

    assert [m["name"] for m in owner.get("/api/v1/members").json()["results"]] == ["Name From A"]
    assert [m["name"] for m in outsider.get("/api/v1/members").json()["results"]] == ["Name From B"]


def test_same_password_in_two_tenants_needs_the_tenant_named(owner, outsider, tenant, outsider_tenant):
    for client in (owner, outsider):
        token = client.post("/api/v1/members", {"email": "both@example.com"}, format="json").json()["invite_token"]
        assert accept(token, VICTIM_PASSWORD).status_code == 200

    ambiguous = login("both@example.com", VICTIM_PASSWORD)
    chosen = login("both@example.com", VICTIM_PASSWORD, tenant=outsider_tenant)

    assert ambiguous.status_code == 400
    assert ambiguous.json()["error"]["code"] == "tenant_required"
    assert {t["id"] for t in ambiguous.json()["error"]["details"]["tenants"]} == {
        str(tenant.pk),
        str(outsider_tenant.pk),
    }
    assert chosen.json()["tenant"] == str(outsider_tenant.pk)


def test_login_naming_a_tenant_where_the_password_is_not_set_is_401(owner, outsider, outsider_tenant):
    token = owner.post("/api/v1/members", {"email": "p@example.com"}, format="json").json()["invite_token"]
    accept(token, VICTIM_PASSWORD)
    outsider.post("/api/v1/members", {"email": "p@example.com"}, format="json")

    response = login("p@example.com", VICTIM_PASSWORD, tenant=outsider_tenant)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_operators_manage_members_in_the_admin_without_seeing_passwords(client, tenant):
    member = MembershipFactory(tenant=tenant, email="ada@example.com", name="Ada")
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))

    listed = client.get("/admin/tenants/membership/?q=ada")
    page = client.get(f"/admin/tenants/membership/{member.pk}/change/")
    tenant_page = client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")

    assert listed.status_code == page.status_code == tenant_page.status_code == 200
    assert b"ada@example.com" in listed.content
    for response in (page, tenant_page):
        assert member.password.encode() not in response.content
