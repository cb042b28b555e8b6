import pytest

from tenants.models import ApiKey, Category, Tenant

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/register", "/register"])
def test_registration_creates_tenant_categories_and_owner_key(anonymous, path):
    response = anonymous.post(
        path, {"service_name": "MyApp", "notification_types": ["promo", "security_alert"]}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"client_id", "api_token"}
    tenant = Tenant.objects.get(pk=body["client_id"])
    assert tenant.name == "MyApp"
    assert sorted(Category.objects.filter(tenant=tenant).values_list("key", flat=True)) == ["promo", "security_alert"]
    key = ApiKey.objects.get(tenant=tenant)
    assert key.role == "owner"
    assert body["api_token"].startswith("af_")
    assert key.prefix == body["api_token"][:11]
    assert body["api_token"] not in {key.hashed, key.prefix}


def test_registered_token_authenticates_at_once(anonymous):
    token = anonymous.post(
        "/register", {"service_name": "MyApp", "notification_types": ["promo"]}, format="json"
    ).json()["api_token"]

    response = anonymous.get("/api/v1/categories", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200
    assert [c["key"] for c in response.json()["results"]] == ["promo"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"notification_types": ["promo"]}, "service_name"),
        ({"service_name": "", "notification_types": ["promo"]}, "service_name"),
        ({"service_name": "MyApp"}, "notification_types"),
        ({"service_name": "MyApp", "notification_types": "promo"}, "notification_types"),
        ({"service_name": "MyApp", "notification_types": ["has space"]}, "notification_types"),
        ({"service_name": "MyApp", "notification_types": ["promo", "promo"]}, "notification_types"),
    ],
)
def test_invalid_registration_is_400_and_writes_nothing(anonymous, body, field):
    response = anonymous.post("/api/v1/register", body, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"]
    assert field in error["message"]
    assert not Tenant.objects.exists()


def test_malformed_json_is_400_invalid_json(anonymous):
    response = anonymous.generic("POST", "/register", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_registration_can_be_closed(anonymous, settings):
    settings.ALERTFLOW_REGISTRATION_OPEN = False

    response = anonymous.post("/register", {"service_name": "MyApp", "notification_types": []}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "registration_closed"
    assert not Tenant.objects.exists()


def test_registration_is_throttled_per_address(anonymous, throttle_rates):
    throttle_rates(register="2/hour")
    body = {"service_name": "MyApp", "notification_types": []}

    statuses = [anonymous.post("/register", body, format="json").status_code for _ in range(3)]

    assert statuses == [201, 201, 429]
