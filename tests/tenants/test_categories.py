import pytest

from tenants.models import Category
from tests.factories import CategoryFactory

pytestmark = pytest.mark.django_db


def test_admin_creates_category_with_defaults(admin, tenant):
    response = admin.post("/api/v1/categories", {"key": "otp", "critical": True, "priority": "critical"}, format="json")

    assert response.status_code == 201
    assert response.json() == {
        "key": "otp",
        "name": "otp",
        "priority": "critical",
        "critical": True,
        "channels": ["email"],
        "expires_in": None,
        "created": response.json()["created"],
    }
    assert Category.objects.get(tenant=tenant, key="otp").critical


def test_duplicate_key_is_400(admin, tenant):
    CategoryFactory(tenant=tenant, key="promo")

    response = admin.post("/api/v1/categories", {"key": "promo"}, format="json")

    assert response.status_code == 400
    assert "key" in response.json()["error"]["details"]["fields"]


def test_same_key_in_another_tenant_is_fine(admin, outsider_tenant):
    CategoryFactory(tenant=outsider_tenant, key="promo")

    assert admin.post("/api/v1/categories", {"key": "promo"}, format="json").status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"key": "x", "channels": ["fax"]},
        {"key": "x", "priority": "urgent"},
        {"key": "a/b"},
        {"key": ""},
        {"key": "x", "expires_in": 0},
        {"key": "x", "expires_in": "soon"},
        {"key": "x", "expires_in": 31 * 24 * 3600},
    ],
)
def test_invalid_category_is_400(admin, body):
    response = admin.post("/api/v1/categories", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_patch_changes_channels_and_priority(admin, tenant):
    CategoryFactory(tenant=tenant, key="promo")

    response = admin.patch(
        "/api/v1/categories/promo", {"channels": ["sms", "push", "sms"], "priority": "low"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["channels"] == ["sms", "push"]
    assert response.json()["priority"] == "low"


def test_delete_removes_category(admin, tenant):
    CategoryFactory(tenant=tenant, key="promo")

    assert admin.delete("/api/v1/categories/promo").status_code == 204
    assert admin.get("/api/v1/categories/promo").status_code == 404


def test_list_is_paginated(member, tenant):
    for n in range(3):
        CategoryFactory(tenant=tenant, key=f"c{n}")

    body = member.get("/api/v1/categories?page_size=2").json()

    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"] is not None
    assert body["previous"] is None


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_outsider_gets_404_on_category(outsider, tenant, method):
    CategoryFactory(tenant=tenant, key="promo")

    response = getattr(outsider, method)("/api/v1/categories/promo", {}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Category.objects.filter(tenant=tenant, key="promo").exists()


def test_outsider_list_does_not_show_other_tenants(outsider, tenant):
    CategoryFactory(tenant=tenant, key="promo")

    assert outsider.get("/api/v1/categories").json()["count"] == 0


def test_patch_sets_and_clears_the_category_expiry(admin, tenant):
    CategoryFactory(tenant=tenant, key="otp")

    assert admin.patch("/api/v1/categories/otp", {"expires_in": 300}, format="json").json()["expires_in"] == 300
    assert Category.objects.get(tenant=tenant, key="otp").expires_in == 300
    assert admin.patch("/api/v1/categories/otp", {"expires_in": None}, format="json").json()["expires_in"] is None
