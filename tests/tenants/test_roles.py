"""The role matrix: members read, admins configure, owners manage keys and people."""

import pytest

from tests.factories import CategoryFactory

pytestmark = pytest.mark.django_db

# (method, path, body, minimum role)
ENDPOINTS = [
    ("get", "/api/v1/categories", None, "member"),
    ("post", "/api/v1/categories", {"key": "new"}, "admin"),
    ("patch", "/api/v1/categories/promo", {"priority": "high"}, "admin"),
    ("delete", "/api/v1/categories/promo", None, "admin"),
    ("get", "/api/v1/members", None, "member"),
    ("post", "/api/v1/members", {"email": "new@example.com", "role": "member"}, "owner"),
    ("get", "/api/v1/api-keys", None, "owner"),
    ("post", "/api/v1/api-keys", {"name": "ci", "role": "admin"}, "owner"),
]
ROLES = ["member", "admin", "owner"]


@pytest.mark.parametrize(("method", "path", "body", "minimum"), ENDPOINTS)
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(request, tenant, role, method, path, body, minimum):
    CategoryFactory(tenant=tenant, key="promo")
    client = request.getfixturevalue(role)

    response = getattr(client, method)(path, body, format="json")

    if ROLES.index(role) >= ROLES.index(minimum):
        assert response.status_code in (200, 201, 204), response.content
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
