import pytest
from django.conf import settings

from alertflow.errors import ApiError
from templates_app import services
from templates_app.rendering import build_context, compiled_cache, render_channel, validate_content
from tests.factories import TemplateFactory, TenantFactory

pytestmark = pytest.mark.django_db


def render(client, code, **body):
    return client.post(f"/api/v1/templates/{code}/render", body, format="json")


def rendered_sms(tenant, member, text, data=None, recipient=None):
    TemplateFactory(tenant=tenant, code="t", channels={"sms": {"text": text}})
    response = render(member, "t", channel="sms", data=data or {}, recipient=recipient or {})
    assert response.status_code == 200, response.json()
    return response.json()


def test_render_fills_data_recipient_and_tenant(tenant, member):
    body = rendered_sms(
        tenant,
        member,
        "{{ greeting|default:'Hi' }} {{ recipient.name|upper }} ({{ recipient.id }}) from {{ tenant.name }}: {{ user.plan }}",
        data={"user": {"plan": "pro"}},
        recipient={"id": "u-1", "name": "Ada"},
    )

    assert body == {
        "code": "t",
        "channel": "sms",
        "locale": "en",
        "version": 1,
        "rendered": {"text": "Hi ADA (u-1) from Acme: pro"},
        "missing": [],
    }


def test_data_keys_cannot_override_recipient_or_tenant(tenant, member):
    body = rendered_sms(
        tenant,
        member,
        "{{ recipient.name }} {{ tenant.name }}",
        data={"recipient": {"name": "Eve"}, "tenant": "x"},
        recipient={"name": "Ada"},
    )

    assert body["rendered"]["text"] == "Ada Acme"


def test_injection_attempts_render_nothing_sensitive(tenant, member):
    body = rendered_sms(
        tenant,
        member,
        "[{{ settings.SECRET_KEY }}{{ request }}{{ request.META }}{{ template.engine }}{{ dicts }}{{ render_context }}"
        "{{ user.items.0.clear }}{{ items.pop }}{{ items.clear }}]{{ items|length }}",
        data={"user": {"plan": "pro"}, "items": [1, 2, 3]},
    )

    text = body["rendered"]["text"]
    assert text == "[]3"
    assert settings.SECRET_KEY not in text
    assert "settings.SECRET_KEY" in body["missing"]


def test_model_instances_in_data_become_plain_text():
    other = TenantFactory(name="Secret Corp")
    context = build_context("Acme", {"name": object()}, {"obj": other})

    result = render_channel({"text": "{{ obj }}|{{ obj.pk }}|{{ obj.api_keys }}"}, "sms", context)

    assert result.fields["text"] == "Secret Corp||"
    assert set(result.missing) == {"obj.pk", "obj.api_keys"}


def test_html_is_autoescaped_but_subject_and_text_are_not(tenant, member):
    channels = {
        "email": {"subject": "{{ x }}", "html": "<p>{{ x }}</p>", "text": "{{ x }}"},
        "sms": {"text": "{{ x }}"},
    }
    TemplateFactory(tenant=tenant, code="t", channels=channels)
    x = "<b>Tom & Jerry</b>"

    email = render(member, "t", channel="email", data={"x": x}).json()["rendered"]
    sms = render(member, "t", channel="sms", data={"x": x}).json()["rendered"]

    assert email == {"subject": x, "html": "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>", "text": x}
    assert sms == {"text": x}


def test_missing_reports_unsupplied_variables_but_not_defaulted_or_loop_ones(tenant, member):
    text = (
        "{{ name }} {{ nick|default:'pal' }} {{ user.email }}"
        "{% if vip %}*{% endif %}{% for item in items %}{{ item.title }}{{ forloop.counter }}{{ sku }}{% endfor %}"
        "{{ recipient.phone }}{{ recipient.name }}"
    )
    body = rendered_sms(tenant, member, text, data={"user": {}, "items": [{"title": "A"}]}, recipient={"name": "Ada"})

    assert body["missing"] == ["name", "user.email", "vip", "sku", "recipient.phone"]


def test_null_data_renders_as_nothing(tenant, member):
    assert rendered_sms(tenant, member, "[{{ x }}]", data={"x": None})["rendered"]["text"] == "[]"


def test_push_data_values_are_templates_too(tenant, member):
    channels = {"push": {"title": "Hi {{ name }}", "data": {"url": "/o/{{ order }}", "n": 3}}}
    TemplateFactory(tenant=tenant, code="t", channels=channels)

    rendered = render(member, "t", channel="push", data={"name": "Ada", "order": 7}).json()["rendered"]

    assert rendered == {"title": "Hi Ada", "data": {"url": "/o/7", "n": 3}}


def test_render_of_a_channel_the_template_lacks_is_400(tenant, member):
    TemplateFactory(tenant=tenant, code="t")

    response = render(member, "t", channel="email")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "channel_not_defined"


def test_render_of_a_pinned_version(tenant, admin, member):
    TemplateFactory(tenant=tenant, code="t", channels={"sms": {"text": "one"}})
    admin.put("/api/v1/templates/t", {"channels": {"sms": {"text": "two"}}}, format="json")

    assert render(member, "t", channel="sms", version=1).json()["rendered"]["text"] == "one"
    assert render(member, "t", channel="sms").json()["rendered"]["text"] == "two"
    assert render(member, "t", channel="sms", version=5).json()["error"]["code"] == "version_not_found"


def test_a_filter_failing_on_data_is_a_400_naming_the_field(tenant, member):
    TemplateFactory(tenant=tenant, code="t", channels={"sms": {"text": "{{ n|divisibleby:d }}"}})

    response = render(member, "t", channel="sms", data={"n": 4, "d": 0})

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "sms.text"}


def test_huge_padding_is_bounded():
    result = render_channel({"text": "{{ x|ljust:'2000000000'|length }}"}, "sms", build_context("A", {}, {"x": "a"}))

    assert result.fields["text"] == "1000"


# --- locale fallback -----------------------------------------------------------------------------


@pytest.fixture
def localized(tenant):
    tenant.default_locale = "de"
    tenant.save()
    for locale in ("fr-CA", "fr", "de", "en"):
        TemplateFactory(tenant=tenant, code="t", locale=locale, channels={"sms": {"text": locale}})
    return tenant


@pytest.mark.parametrize(
    ("deleted", "expected"),
    [([], "fr-CA"), (["fr-CA"], "fr"), (["fr-CA", "fr"], "de"), (["fr-CA", "fr", "de"], "en")],
)
def test_locale_falls_back_from_region_to_language_to_tenant_default_to_en(localized, member, deleted, expected):
    services.delete_templates(localized.templates.filter(locale__in=deleted))

    body = render(member, "t", channel="sms", locale="fr-ca").json()

    assert body["locale"] == expected
    assert body["rendered"]["text"] == expected


def test_recipient_locale_is_used_when_the_request_names_none(localized, member):
    assert render(member, "t", channel="sms", recipient={"locale": "fr"}).json()["locale"] == "fr"


def test_no_matching_locale_is_404(tenant, member):
    TemplateFactory(tenant=tenant, code="t", locale="it")

    response = render(member, "t", channel="sms", locale="fr-CA")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "template_not_found"


def test_resolve_version_skips_deleted_templates_and_pins_versions(tenant):
    template = TemplateFactory(tenant=tenant, code="t")
    services.update_template(template, channels={"sms": {"text": "v2"}})

    assert services.resolve_version(tenant, "t", "en-GB").number == 2
    assert services.resolve_version(tenant, "t", None, version=1).number == 1
    services.delete_templates(tenant.templates.all())
    with pytest.raises(ApiError) as raised:
        services.resolve_version(tenant, "t", "en")
    assert raised.value.error_code == "template_not_found"


def test_locale_chain_is_deduplicated_and_canonical():
    assert services.locale_chain("zh-hant-tw", "EN") == ["zh-Hant-TW", "zh-Hant", "zh", "en"]


def test_locale_chain_reads_a_stored_locale_the_rule_refuses_as_it_is():
    """A tenant default saved unchecked, or a request naming a template stored before templates
    followed the one rule: looked up by its own spelling (`_` read as `-`, as before), after
    which the chain goes on."""
    assert services.locale_chain("zh-yue", "fr_CA") == ["zh-yue", "zh", "fr-CA", "fr", "en"]
    assert services.locale_chain("English", None) == ["English", "en"]
    assert services.locale_chain(None, "") == ["en"]


# --- the compiled-template cache -----------------------------------------------------------------


def test_rendering_twice_compiles_once(tenant, member):
    TemplateFactory(tenant=tenant, code="t", channels={"email": {"subject": "Hi {{ n }}", "html": "<p>{{ n }}</p>"}})
    compiled_cache.clear()

    first = render(member, "t", channel="email", data={"n": 1}).json()
    second = render(member, "t", channel="email", data={"n": 2}).json()

    assert (first["rendered"]["subject"], second["rendered"]["subject"]) == ("Hi 1", "Hi 2")
    assert compiled_cache.misses == 2  # subject and html, compiled on the first render only
    assert compiled_cache.hits == 2


def test_inline_content_is_cached_by_its_source():
    compiled_cache.clear()
    content = {"text": "Hi {{ name }}"}

    for name in ("a", "b", "c"):
        render_channel(content, "sms", build_context("A", {}, {"name": name}))

    assert (compiled_cache.misses, compiled_cache.hits) == (1, 2)


def test_validating_the_same_content_again_compiles_nothing():
    compiled_cache.clear()
    content = {"email": {"subject": "Hi {{ name }}", "text": "Plain text, nothing to compile."}}

    for _ in range(3):
        validate_content(content)

    assert (compiled_cache.misses, compiled_cache.hits, len(compiled_cache)) == (1, 2, 1)
