import pytest
from django.contrib.auth import get_user_model

from templates_app.models import Template, TemplateVersion
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

WELCOME = {
    "email": {"subject": "Welcome, {{ name }}", "html": "<p>Hi {{ name }}</p>", "text": "Hi {{ name }}"},
    "sms": {"text": "Welcome {{ name }}"},
}


def create(client, code="welcome", **fields):
    return client.post(
        "/api/v1/templates", {"code": code, "name": "Welcome", "channels": WELCOME, **fields}, format="json"
    )


def test_create_answers_version_one_with_its_content(admin):
    response = create(admin, description="First mail")

    assert response.status_code == 201
    body = response.json()
    assert body["code"] == "welcome"
    assert body["locale"] == "en"
    assert body["name"] == "Welcome"
    assert body["description"] == "First mail"
    assert body["version"] == 1
    assert body["channels"] == WELCOME
    assert body["created"] and body["created_by"]


def test_create_existing_code_and_locale_is_a_conflict(admin):
    create(admin)
    response = create(admin)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "template_exists"


def test_create_existing_code_in_a_new_locale_adds_the_locale(admin):
    create(admin)
    response = create(admin, locale="fr-ca", channels={"sms": {"text": "Bienvenue {{ name }}"}})

    assert response.status_code == 201
    assert response.json()["locale"] == "fr-CA"
    assert response.json()["version"] == 1
    assert Template.objects.filter(code="welcome").count() == 2


def test_put_creates_the_next_version_and_keeps_the_old_one(admin):
    create(admin)
    response = admin.put("/api/v1/templates/welcome", {"channels": {"sms": {"text": "v2 {{ name }}"}}}, format="json")

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response.json()["channels"] == {"sms": {"text": "v2 {{ name }}"}}
    old = admin.get("/api/v1/templates/welcome?version=1").json()
    assert old["version"] == 1
    assert old["channels"] == WELCOME
    assert old["latest_version"] == 2


def test_put_of_only_the_name_carries_the_content_over(admin):
    create(admin)
    response = admin.put("/api/v1/templates/welcome", {"name": "Hello"}, format="json")

    assert response.json()["version"] == 2
    assert response.json()["name"] == "Hello"
    assert response.json()["channels"] == WELCOME


def test_put_with_nothing_to_change_is_refused(admin):
    create(admin)
    response = admin.put("/api/v1/templates/welcome", {}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_put_targets_the_locale_given(admin):
    create(admin)
    create(admin, locale="fr", channels={"sms": {"text": "Salut"}})
    admin.put("/api/v1/templates/welcome?locale=fr", {"channels": {"sms": {"text": "Bonjour"}}}, format="json")

    assert admin.get("/api/v1/templates/welcome?locale=fr").json()["version"] == 2
    assert admin.get("/api/v1/templates/welcome").json()["version"] == 1


def test_get_defaults_to_the_latest_version(admin):
    create(admin)
    admin.put("/api/v1/templates/welcome", {"channels": {"sms": {"text": "v2"}}}, format="json")

    assert admin.get("/api/v1/templates/welcome").json()["version"] == 2


def test_get_unknown_version_is_404(admin):
    create(admin)
    response = admin.get("/api/v1/templates/welcome?version=9")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "version_not_found"


def test_get_with_a_malformed_locale_is_400(admin):
    create(admin)

    assert admin.get("/api/v1/templates/welcome?locale=not a locale").status_code == 400


@pytest.mark.parametrize("locale", ["fr_ca", "zh-yue", "en-x-twain", "de-a", "es-12"])
def test_a_new_templates_locale_is_checked_by_the_recipients_rule(admin, locale):
    """Templates had a looser pattern of their own: a template saved under a locale no
    recipient or tenant may have, which no send would ever look up."""
    refused_for_a_recipient = admin.put("/api/v1/recipients/ada", {"locale": locale}, format="json")

    response = create(admin, locale=locale)

    assert response.status_code == 400, response.content
    assert (
        response.json()["error"]["details"]["fields"]["locale"]
        == (refused_for_a_recipient.json()["error"]["details"]["fields"]["locale"])
    )
    assert not Template.objects.exists()


def test_a_template_stored_under_a_locale_the_rule_refuses_is_still_read_rendered_and_deleted(admin, tenant):
    """Only new locales are checked: a template written before templates followed the one
    rule keeps working under the locale it was stored with."""
    TemplateFactory(tenant=tenant, code="welcome", locale="zh-yue", channels={"sms": {"text": "v1"}})
    tenant.default_locale = "zh-yue"  # saved before the admin checked it
    tenant.save()

    assert admin.get("/api/v1/templates/welcome?locale=zh-yue").json()["version"] == 1
    assert admin.get("/api/v1/templates/welcome/versions?locale=zh-yue").status_code == 200
    updated = admin.put("/api/v1/templates/welcome?locale=zh-yue", {"channels": {"sms": {"text": "v2"}}}, format="json")
    assert updated.status_code == 200, updated.content
    rendered = admin.post("/api/v1/templates/welcome/render", {"channel": "sms", "locale": "zh-yue"}, format="json")
    assert (rendered.status_code, rendered.json()["locale"], rendered.json()["rendered"]) == (
        200,
        "zh-yue",
        {"text": "v2"},
    )
    by_default = admin.post("/api/v1/templates/welcome/render", {"channel": "sms"}, format="json").json()
    assert by_default["locale"] == "zh-yue"  # the tenant's default locale, as stored
    assert admin.delete("/api/v1/templates/welcome?locale=zh-yue").status_code == 204
    assert admin.get("/api/v1/templates/welcome?locale=zh-yue").status_code == 400  # nothing stored under it now


def test_list_has_one_item_per_code_and_locale_with_its_latest_version(admin):
    create(admin)
    create(admin, locale="fr")
    create(admin, code="reset")
    admin.put("/api/v1/templates/welcome", {"name": "Welcome!"}, format="json")

    response = admin.get("/api/v1/templates?page_size=2")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [(i["code"], i["locale"], i["version"]) for i in body["results"]] == [
        ("reset", "en", 1),
        ("welcome", "en", 2),
    ]
    assert body["next"]


def test_versions_lists_the_history_newest_first(admin):
    create(admin)
    admin.put("/api/v1/templates/welcome", {"channels": {"sms": {"text": "v2"}}}, format="json")

    response = admin.get("/api/v1/templates/welcome/versions")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [v["version"] for v in results] == [2, 1]
    assert results[0]["channels"] == {"sms": {"text": "v2"}}


def test_delete_of_one_locale_keeps_the_others(admin):
    create(admin)
    create(admin, locale="fr")

    assert admin.delete("/api/v1/templates/welcome?locale=fr").status_code == 204
    assert admin.get("/api/v1/templates/welcome?locale=fr").status_code == 404
    assert admin.get("/api/v1/templates/welcome").status_code == 200


def test_delete_without_locale_deletes_every_locale_but_keeps_history(admin):
    create(admin)
    create(admin, locale="fr")

    assert admin.delete("/api/v1/templates/welcome").status_code == 204
    assert admin.get("/api/v1/templates/welcome").status_code == 404
    assert admin.get("/api/v1/templates").json()["count"] == 0
    assert admin.delete("/api/v1/templates/welcome").status_code == 404
    assert TemplateVersion.objects.filter(template__code="welcome").count() == 2


def test_post_of_a_deleted_template_revives_it_with_a_new_version(admin):
    create(admin)
    admin.delete("/api/v1/templates/welcome")

    response = create(admin, channels={"sms": {"text": "Back"}})

    assert response.status_code == 201
    assert response.json()["version"] == 2
    assert admin.get("/api/v1/templates/welcome?version=1").json()["channels"] == WELCOME


def test_versions_are_immutable():
    version = TemplateFactory().versions.get()
    version.channels = {"sms": {"text": "changed"}}

    with pytest.raises(TypeError):
        version.save()
    with pytest.raises(TypeError):
        TemplateVersion.objects.filter(pk=version.pk).update(channels={})


def test_code_with_a_slash_or_space_is_refused(admin):
    response = create(admin, code="bad code")

    assert response.status_code == 400
    assert "code" in response.json()["error"]["details"]["fields"]


def test_admin_shows_a_template_with_its_versions_read_only(client, tenant):
    template = TemplateFactory(tenant=tenant, channels={"sms": {"text": "Hi there"}})
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))

    page = client.get(f"/admin/templates_app/template/{template.pk}/change/")

    assert page.status_code == 200
    assert b"Hi there" in page.content
    assert b'name="versions-0-channels"' not in page.content  # shown, not editable
    assert client.get("/admin/templates_app/template/").status_code == 200
