import pytest
from django.db import connection

from delivery.models import Provider, provider_class

from .conftest import SENDGRID_KEY, SMTP_PASSWORD, TWILIO_TOKEN, make_provider, smtp_config, twilio_config

pytestmark = pytest.mark.django_db

URL = "/api/v1/providers"


def create(client, **body):
    body = {"channel": "email", "kind": "smtp", "name": "primary", "config": smtp_config(), **body}
    return client.post(URL, body, format="json")


def test_admin_creates_provider_and_gets_config_without_secrets(admin, tenant):
    response = create(admin, priority=10)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["channel"] == "email"
    assert body["kind"] == "smtp"
    assert body["name"] == "primary"
    assert body["priority"] == 10
    assert body["enabled"] is True
    assert body["config"]["host"] == "smtp.example.com"
    assert body["config"]["port"] == 587  # the kind's default for STARTTLS, filled in by validation
    assert "password" not in body["config"]
    assert body["secrets_set"] == ["password"]
    assert SMTP_PASSWORD not in response.content.decode()
    provider = Provider.objects.get(tenant=tenant, pk=body["id"])
    assert provider.full_config()["password"] == SMTP_PASSWORD


def test_secret_is_stored_encrypted(admin, tenant):
    provider_id = create(admin).json()["id"]

    with connection.cursor() as cursor:
        cursor.execute("SELECT config::text, secrets FROM delivery_provider WHERE id = %s", [provider_id])
        config, secrets = cursor.fetchone()

    assert SMTP_PASSWORD not in config
    assert SMTP_PASSWORD not in secrets
    assert "password" not in config
    assert secrets.startswith("gAAAA")  # a Fernet token


def test_secret_appears_in_no_response_body(admin, tenant):
    bodies = []
    created = create(admin)
    bodies.append(created.content)
    provider_id = created.json()["id"]
    bodies.append(admin.get(URL).content)
    bodies.append(admin.get(f"{URL}/{provider_id}").content)
    bodies.append(admin.patch(f"{URL}/{provider_id}", {"config": {"host": "mx.example.com"}}, format="json").content)
    bodies.append(admin.patch(f"{URL}/{provider_id}", {"config": {"port": "not a port"}}, format="json").content)
    bodies.append(admin.options(URL).content)

    for body in bodies:
        assert SMTP_PASSWORD not in body.decode()


def test_list_orders_by_channel_then_priority(admin, tenant):
    make_provider(tenant, name="backup", priority=20)
    make_provider(tenant, name="main", priority=10)
    make_provider(tenant, channel="sms", kind="twilio", name="twilio", config=twilio_config(), priority=0)

    body = admin.get(URL).json()

    assert body["count"] == 3
    assert [(p["channel"], p["name"]) for p in body["results"]] == [
        ("email", "main"),
        ("email", "backup"),
        ("sms", "twilio"),
    ]
    assert TWILIO_TOKEN not in str(body)
    assert SMTP_PASSWORD not in str(body)


def test_list_filters_by_channel(admin, tenant):
    make_provider(tenant, name="main")
    make_provider(tenant, channel="sms", kind="twilio", name="twilio", config=twilio_config())

    body = admin.get(f"{URL}?channel=sms").json()

    assert [p["name"] for p in body["results"]] == ["twilio"]


def test_get_returns_one_provider(admin, tenant):
    provider = make_provider(tenant, name="main")

    response = admin.get(f"{URL}/{provider.pk}")

    assert response.status_code == 200
    assert response.json()["id"] == str(provider.pk)
    assert response.json()["secrets_set"] == ["password"]


def test_patch_keeps_an_omitted_secret(admin, tenant):
    provider = make_provider(tenant, name="main")

    response = admin.patch(f"{URL}/{provider.pk}", {"config": {"host": "mx.example.com"}}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["config"]["host"] == "mx.example.com"
    assert response.json()["secrets_set"] == ["password"]
    provider.refresh_from_db()
    assert provider.full_config()["password"] == SMTP_PASSWORD
    assert provider.full_config()["host"] == "mx.example.com"


def test_patch_with_explicit_null_clears_a_secret(admin, tenant):
    provider = make_provider(tenant, name="main")

    # SMTP wants username and password together: clearing the login clears both.
    response = admin.patch(f"{URL}/{provider.pk}", {"config": {"username": None, "password": None}}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["secrets_set"] == []
    provider.refresh_from_db()
    assert provider.secrets == ""
    assert "password" not in provider.full_config()
    assert provider_class("email", "smtp").validate_config(provider.full_config())["password"] == ""


def test_patch_replaces_a_secret(admin, tenant):
    provider = make_provider(tenant, name="main")

    response = admin.patch(f"{URL}/{provider.pk}", {"config": {"password": "new-password"}}, format="json")

    assert response.status_code == 200
    provider.refresh_from_db()
    assert provider.full_config()["password"] == "new-password"
    assert "new-password" not in response.content.decode()


def test_patch_without_config_leaves_config_alone(admin, tenant):
    provider = make_provider(tenant, name="main")
    secrets = provider.secrets

    response = admin.patch(f"{URL}/{provider.pk}", {"priority": 5, "enabled": False, "name": "old"}, format="json")

    assert response.status_code == 200
    assert response.json()["priority"] == 5
    assert response.json()["enabled"] is False
    provider.refresh_from_db()
    assert (provider.name, provider.secrets) == ("old", secrets)


def test_patch_cannot_change_kind(admin, tenant):
    provider = make_provider(tenant, name="main")

    response = admin.patch(f"{URL}/{provider.pk}", {"kind": "sendgrid"}, format="json")

    assert response.status_code == 400
    assert "kind" in response.json()["error"]["details"]["fields"]


def test_delete_removes_provider(admin, tenant):
    provider = make_provider(tenant, name="main")

    assert admin.delete(f"{URL}/{provider.pk}").status_code == 204
    assert admin.get(f"{URL}/{provider.pk}").status_code == 404
    assert not Provider.objects.filter(pk=provider.pk).exists()


def test_unknown_kind_is_400_naming_it(admin):
    response = create(admin, kind="carrier_pigeon", config={})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "carrier_pigeon" in error["message"]
    assert "smtp" in error["details"]["fields"]["kind"][0]  # lists the kinds that exist


def test_kind_of_another_channel_is_400(admin):
    response = create(admin, kind="twilio", config=twilio_config())

    assert response.status_code == 400
    error = response.json()["error"]
    assert "kind" in error["details"]["fields"]
    assert "sms" in error["message"]
    assert TWILIO_TOKEN not in response.content.decode()


def test_inapp_has_no_providers(admin):
    response = create(admin, channel="inapp", kind="console", config={})

    assert response.status_code == 400
    assert "channel" in response.json()["error"]["details"]["fields"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (smtp_config(host=""), "host"),
        (smtp_config(port=70000), "port"),
        (smtp_config(from_email="not an address"), "from_email"),
        # Nested comments: the address parser recursed past Python's limit (RecursionError, a 500).
        (smtp_config(from_email="alerts@example.com " + "(" * 5000), "from_email"),
        # Taken, and Django's mail code then spent a second per email re-reading it (quadratic).
        (smtp_config(from_email='"' * 20000 + " <alerts@example.com>"), "from_email"),
        (smtp_config(colour="blue"), "colour"),
        (smtp_config(password=None), "password"),  # a username without a password
    ],
)
def test_invalid_config_is_400_naming_the_field(admin, tenant, config, field):
    response = create(admin, config=config)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"]["config"]
    assert error["message"].startswith(f"config: {field}: ")
    assert not Provider.objects.filter(tenant=tenant).exists()


def test_required_secret_missing_is_400(admin):
    response = create(admin, kind="sendgrid", config={"from_email": "alerts@example.com"})

    assert response.status_code == 400
    assert "api_key" in response.json()["error"]["details"]["fields"]["config"]


def test_twilio_token_is_write_only(admin):
    response = create(admin, channel="sms", kind="twilio", config=twilio_config())

    assert response.status_code == 201, response.content
    assert response.json()["secrets_set"] == ["auth_token"]
    assert response.json()["config"]["account_sid"] == "AC" + "0" * 32
    assert TWILIO_TOKEN not in response.content.decode()


def test_sendgrid_key_is_write_only(admin):
    response = create(admin, kind="sendgrid", config={"api_key": SENDGRID_KEY, "from_email": "alerts@example.com"})

    assert response.status_code == 201, response.content
    assert response.json()["secrets_set"] == ["api_key"]
    assert SENDGRID_KEY not in response.content.decode()


def test_duplicate_name_in_a_channel_is_400(admin, tenant):
    make_provider(tenant, name="primary")

    response = create(admin, name="primary")

    assert response.status_code == 400
    assert "name" in response.json()["error"]["details"]["fields"]


def test_same_name_on_another_channel_or_tenant_is_fine(admin, tenant, outsider_tenant):
    make_provider(tenant, channel="sms", kind="twilio", name="primary", config=twilio_config())
    make_provider(outsider_tenant, name="primary")

    assert create(admin, name="primary").status_code == 201


def test_validation_message_masks_a_secret_it_quotes():
    from delivery.serializers import config_problem

    problem = config_problem(
        ValueError(f"api_key: {SENDGRID_KEY!r} is malformed"), {"api_key": SENDGRID_KEY}, ("api_key",)
    )

    assert problem == {"api_key": ["'***' is malformed"]}


def test_unreadable_secrets_show_as_null_and_patch_sets_them_again(admin, tenant, settings):
    provider = make_provider(tenant, name="main")
    settings.SECRET_KEY = "a-rotated-secret-key"  # the derived encryption key changes with it

    shown = admin.get(f"{URL}/{provider.pk}")
    repaired = admin.patch(f"{URL}/{provider.pk}", {"config": {"password": "re-entered"}}, format="json")

    assert shown.status_code == 200
    assert shown.json()["secrets_set"] is None
    assert repaired.status_code == 200, repaired.content
    assert repaired.json()["secrets_set"] == ["password"]
    provider.refresh_from_db()
    assert provider.full_config()["password"] == "re-entered"


# --- Roles and tenancy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "detail", "body"),
    [
        ("get", False, None),
        ("post", False, {"channel": "email", "kind": "console", "name": "new", "config": {}}),
        ("get", True, None),
        ("patch", True, {"priority": 3}),
        ("delete", True, None),
    ],
)
@pytest.mark.parametrize(("role", "allowed"), [("member", False), ("admin", True), ("owner", True)])
def test_role_matrix(request, tenant, role, allowed, method, detail, body):
    provider = make_provider(tenant, name="main")
    client = request.getfixturevalue(role)
    path = f"{URL}/{provider.pk}" if detail else URL

    response = getattr(client, method)(path, body, format="json")

    if allowed:
        assert response.status_code in (200, 201, 204), response.content
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


def test_anonymous_is_401(anonymous):
    assert anonymous.get(URL).status_code == 401


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_outsider_gets_404_on_provider(outsider, tenant, method):
    provider = make_provider(tenant, name="main")

    response = getattr(outsider, method)(f"{URL}/{provider.pk}", {"priority": 1}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    provider.refresh_from_db()
    assert provider.priority == 0


def test_outsider_list_does_not_show_other_tenants(outsider, tenant):
    make_provider(tenant, name="main")

    assert outsider.get(URL).json()["count"] == 0


def test_malformed_id_is_404(admin):
    assert admin.get(f"{URL}/not-a-uuid").status_code == 404


def test_django_admin_shows_which_secrets_are_set_never_their_values(admin_client, tenant):
    provider = make_provider(tenant, name="main")

    listing = admin_client.get("/admin/delivery/provider/")
    page = admin_client.get(f"/admin/delivery/provider/{provider.pk}/change/")

    assert listing.status_code == 200
    assert page.status_code == 200
    for response in (listing, page):
        html = response.content.decode()
        assert "password" in html
        assert SMTP_PASSWORD not in html
        assert provider.secrets not in html
