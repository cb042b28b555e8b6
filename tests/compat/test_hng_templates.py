"""HNG's template service and metrics (shared/seeds/002): its README's requests as written."""

import pytest
from rest_framework.test import APIClient

from alertflow.choices import Role
from delivery import pipeline
from notifications.models import Message
from templates_app.models import Template
from tests.compat.hng_readme import SEND, USER_ID
from tests.factories import RecipientFactory, api_key
from tests.pipeline.conftest import add_provider, smtp_config

pytestmark = pytest.mark.django_db

# "2. Create a Template", as written in the README.
CREATE = {
    "template_code": "welcome_email",
    "name": "Welcome Email",
    "description": "Welcome new users",
    "subject": "Welcome to {{company_name}}, {{name}}!",
    "body": '<html><body><h1>Hello {{name}}</h1><p>Welcome to {{company_name}}! Click <a href="{{verification_link}}">'
    "here</a> to verify your email.</p><p>Thanks,<br>The {{company_name}} Team</p></body></html>",
    "language": "en",
}


@pytest.fixture
def hng(tenant, smtp_server):
    """An HNG client: `Authorization: Bearer <token>` (an AlertFlow API key) and JSON."""
    RecipientFactory(tenant=tenant, external_id=USER_ID, name="John Doe", email="john@example.com")
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    secret = api_key(tenant, Role.ADMIN)[1]
    return APIClient(headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})


def test_create_answers_the_envelope_and_the_send_renders_it(hng, smtp_server):
    response = hng.post("/api/v1/templates", CREATE, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "Template created successfully"
    data = body["data"]
    assert (data["template_code"], data["name"], data["version"], data["is_active"]) == (
        "welcome_email",
        "Welcome Email",
        1,
        True,
    )
    assert isinstance(data["id"], int)
    template = Template.objects.get(code="welcome_email")
    assert (template.locale, template.description) == ("en", "Welcome new users")

    assert hng.post("/api/v1/notifications", SEND, format="json").status_code == 202
    assert pipeline.deliver(list(Message.objects.values_list("id", flat=True))) == 1

    [received] = smtp_server.messages
    assert received.message["Subject"] == "Welcome to Acme Inc, John Doe!"
    html = received.message.get_body(("html",)).get_content()
    assert "Hello John Doe" in html and "The Acme Inc Team" in html


def test_a_push_send_uses_the_same_template(hng):
    hng.post("/api/v1/templates", CREATE, format="json")
    device = {"platform": "fcm", "token": "fcm-token-john"}
    assert hng.post(f"/api/v1/recipients/{USER_ID}/devices", device, format="json").status_code == 201

    response = hng.post(
        "/api/v1/notifications", {**SEND, "notification_type": "push", "request_id": "req-push"}, format="json"
    )

    assert response.status_code == 202, response.content
    assert Message.objects.get().channel == "push"
    preview = hng.post(
        "/api/v1/templates/welcome_email/render", {"channel": "push", "data": SEND["variables"]}, format="json"
    )
    assert preview.json()["rendered"]["title"] == "Welcome to Acme Inc, John Doe!"


def test_put_writes_a_new_version_and_versions_lists_them(hng, smtp_server):
    hng.post("/api/v1/templates", CREATE, format="json")

    response = hng.put("/api/v1/templates/welcome_email", {"subject": "Hi {{name}}, welcome aboard"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["message"] == "Template updated successfully"
    assert (body["data"]["version"], body["data"]["subject"]) == (2, "Hi {{name}}, welcome aboard")
    assert body["data"]["body"] == CREATE["body"]  # carried over

    versions = hng.get("/api/v1/templates/welcome_email/versions")
    assert versions.status_code == 200
    assert [v["version"] for v in versions.json()["results"]] == [2, 1]

    hng.post("/api/v1/notifications", SEND, format="json")
    pipeline.deliver(list(Message.objects.values_list("id", flat=True)))
    assert smtp_server.messages[0].message["Subject"] == "Hi John Doe, welcome aboard"


def test_language_makes_a_template_per_locale(hng, tenant):
    hng.post("/api/v1/templates", CREATE, format="json")
    french = {**CREATE, "language": "fr", "subject": "Bienvenue {{name}}", "body": "Bonjour {{name}}"}

    assert hng.post("/api/v1/templates", french, format="json").status_code == 201
    assert (
        hng.put("/api/v1/templates/welcome_email", {"language": "fr", "body": "Salut"}, format="json").json()["data"][
            "version"
        ]
        == 2
    )
    assert dict(Template.objects.values_list("locale", "version")) == {"en": 1, "fr": 2}


def test_render_answers_subject_and_body(hng):
    hng.post("/api/v1/templates", CREATE, format="json")

    response = hng.post(
        "/api/v1/templates/render",
        {"template_code": "welcome_email", "variables": {"name": "Ada", "company_name": "Acme"}},
        format="json",
    )

    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert data["subject"] == "Welcome to Acme, Ada!"
    assert "<h1>Hello Ada</h1>" in data["body"]
    assert data["missing_variables"] == ["verification_link"]
    assert (data["version"], data["language"]) == (1, "en")


def test_a_template_coded_render_is_still_alertflows(hng):
    own = {"code": "render", "channels": {"sms": {"text": "Hi"}}}
    assert hng.post("/api/v1/templates", own, format="json").status_code == 201

    assert hng.get("/api/v1/templates/render").json()["code"] == "render"
    assert hng.put("/api/v1/templates/render", {"name": "Renamed"}, format="json").json()["version"] == 2
    assert hng.delete("/api/v1/templates/render").status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**CREATE, "channels": {}}, "channels"),
        ({**CREATE, "colour": "red"}, "colour"),
        ({**CREATE, "subject": "{% load x %}"}, "subject"),
        ({**CREATE, "body": "{{ name|no_such_filter }}"}, "body"),
        ({**CREATE, "language": "not a locale"}, "language"),
        ({k: v for k, v in CREATE.items() if k != "body"}, "body"),
    ],
)
def test_bad_or_mixed_template_fields_are_a_400_naming_the_field(hng, body, field):
    response = hng.post("/api/v1/templates", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]["fields"]
    assert not Template.objects.exists()


def test_put_refuses_unknown_fields_and_a_different_code(hng):
    hng.post("/api/v1/templates", CREATE, format="json")

    for body, field in (
        ({"subject": "x", "html": "y"}, "html"),
        ({"template_code": "other", "body": "x"}, "template_code"),
    ):
        response = hng.put("/api/v1/templates/welcome_email", body, format="json")
        assert response.status_code == 400
        assert field in response.json()["error"]["details"]["fields"]
    assert Template.objects.get().version == 1


def test_alertflow_own_template_api_is_unchanged(hng):
    own = {"code": "own", "channels": {"email": {"subject": "S", "text": "T"}}}

    created = hng.post("/api/v1/templates", own, format="json")
    assert created.status_code == 201
    assert created.json()["code"] == "own" and "success" not in created.json()
    updated = hng.put("/api/v1/templates/own", {"channels": {"sms": {"text": "T"}}}, format="json")
    assert updated.status_code == 200 and updated.json()["version"] == 2


def test_outsider_tenant_gets_404(hng, outsider):
    hng.post("/api/v1/templates", CREATE, format="json")

    assert outsider.put("/api/v1/templates/welcome_email", {"subject": "x"}, format="json").status_code == 404
    render = outsider.post("/api/v1/templates/render", {"template_code": "welcome_email"}, format="json")
    assert render.status_code == 404
    assert Template.objects.get().version == 1


def test_metrics_count_the_tenants_messages_in_hng_words(hng, outsider, smtp_server):
    hng.post("/api/v1/templates", CREATE, format="json")
    hng.post("/api/v1/notifications", SEND, format="json")
    hng.post("/api/v1/notifications", {**SEND, "request_id": "req-2"}, format="json")
    first = Message.objects.order_by("created").first()
    pipeline.deliver([first.id])

    response = hng.get("/api/v1/metrics")

    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["total"], data["delivered"], data["pending"], data["failed"]) == (2, 1, 1, 0)
    assert data["by_channel"]["email"] == {"pending": 1, "delivered": 1, "failed": 0}
    assert data["usage"]["channels"]["email"]["used"] == 2
    mine = outsider.get("/api/v1/metrics").json()["data"]
    assert (mine["total"], mine["usage"]["channels"]["email"]["used"]) == (0, 0)


@pytest.mark.parametrize("body", [[], "welcome_email", None])
def test_render_refuses_a_body_that_is_not_an_object(hng, body):
    response = hng.post("/api/v1/templates/render", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
