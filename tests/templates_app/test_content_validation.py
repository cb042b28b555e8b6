import pytest

pytestmark = pytest.mark.django_db


def post(client, channels):
    return client.post("/api/v1/templates", {"code": "t", "channels": channels}, format="json")


def fields_of(response):
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return error["details"]["fields"]["channels"]


def test_unknown_channel_is_named(admin):
    fields = fields_of(post(admin, {"fax": {"text": "hi"}}))

    assert "fax" in fields


def test_unknown_field_is_named(admin):
    response = post(admin, {"sms": {"text": "hi", "body": "x"}})

    assert "body" in fields_of(response)["sms"]
    assert "channels: sms: body:" in response.json()["error"]["message"]


def test_no_channel_at_all_is_refused(admin):
    fields_of(post(admin, {}))


@pytest.mark.parametrize(
    ("channels", "channel", "field"),
    [
        ({"email": {"html": "<p>hi</p>"}}, "email", "subject"),
        ({"email": {"subject": "hi"}}, "email", "html"),
        ({"sms": {"text": "  "}}, "sms", "text"),
        ({"push": {"image": "https://x/i.png"}}, "push", "title"),
        ({"inapp": {"action_url": "/x"}}, "inapp", "title"),
    ],
)
def test_missing_required_field_is_named(admin, channels, channel, field):
    assert field in fields_of(post(admin, channels))[channel]


def test_email_with_subject_and_only_text_is_enough(admin):
    assert post(admin, {"email": {"subject": "s", "text": "t"}}).status_code == 201


def test_non_string_field_and_non_object_data_are_refused(admin):
    fields = fields_of(post(admin, {"push": {"title": 3, "data": "x"}}))

    assert set(fields["push"]) == {"title", "data"}


def test_syntax_error_is_refused_at_save_naming_the_field(admin):
    response = post(admin, {"email": {"subject": "Hi {% if name %}", "text": "ok"}})

    assert "subject" in fields_of(response)["email"]
    assert response.json()["error"]["message"].startswith("channels: email: subject:")


def test_syntax_error_in_a_data_value_names_the_key(admin):
    fields = fields_of(post(admin, {"push": {"title": "t", "data": {"url": "{{ x|nosuchfilter }}"}}}))

    assert "url" in fields["push"]["data"]


@pytest.mark.parametrize(
    ("source", "tag"),
    [
        ("{% load static %}", "load"),
        ("{% include 'base.html' %}", "include"),
        ("{% extends 'base.html' %}", "extends"),
        ("{% debug %}", "debug"),
        ("{% url 'admin:index' %}", "url"),
        ("{% csrf_token %}", "csrf_token"),
        ("{% lorem 99999999 w %}", "lorem"),
        ("{% if x %}{% load i18n %}{% endif %}", "load"),
    ],
)
def test_forbidden_tags_are_refused_at_save(admin, source, tag):
    response = post(admin, {"sms": {"text": source}})

    problem = fields_of(response)["sms"]["text"][0]
    assert f"{{% {tag} %}} tag is not allowed" in problem


def test_underscore_lookups_are_refused_at_save(admin):
    fields = fields_of(post(admin, {"sms": {"text": "{{ recipient.__class__.__mro__ }}"}}))

    assert "underscores" in fields["sms"]["text"][0]


def test_debugging_filter_pprint_is_not_available(admin):
    assert "text" in fields_of(post(admin, {"sms": {"text": "{{ recipient|pprint }}"}}))["sms"]
