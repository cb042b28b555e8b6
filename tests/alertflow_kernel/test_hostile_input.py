"""Input PostgreSQL cannot store or Python cannot parse is refused at the edge, on every route.

NUL characters (text and jsonb cannot hold U+0000) and lone surrogates (UTF-8 cannot encode
one) in a path, a query, a header or anywhere in a JSON body, and JSON nested deeper than
ALERTFLOW_JSON_MAX_DEPTH, are a 400 naming the field, and nothing is written.
"""

import json

import pytest

from delivery.models import Provider
from notifications.models import Notification
from preferences.models import Device, Recipient
from templates_app.models import Template
from tenants.models import Tenant
from tests.factories import CategoryFactory, RecipientFactory

pytestmark = pytest.mark.django_db

SMS = {"sms": {"text": "Code {{ code }}"}}
SMTP = {"host": "smtp.example.com", "username": "u", "password": "p", "from_email": "a@example.com"}


def nested(depth: int, leaf="x") -> dict:
    """A JSON object `depth` levels deep counting itself: nested(2) == {"a": {"a": "x"}}."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_json(depth: int) -> str:
    """Text of `depth` nested objects, built as text: json.dumps itself gives up near 1,000."""
    return '{"a":' * depth + "1" + "}" * depth


@pytest.fixture
def ada(tenant):
    CategoryFactory(tenant=tenant, key="alert", channels=["sms"])
    return RecipientFactory(tenant=tenant, external_id="ada", phone="+14155552671")


def stored_rows() -> tuple:
    return tuple(model.objects.count() for model in (Tenant, Recipient, Notification, Template, Provider, Device))


def call(client, method, path, body):
    if body is None:
        return getattr(client, method)(path)
    return getattr(client, method)(path, json.dumps(body), content_type="application/json")


NUL_REQUESTS = [
    ("get", "/api/v1/recipients/a%00", None, "path"),
    ("get", "/api/v1/notifications?status=a%00", None, "status"),
    ("get", "/api/v1/messages?error=%00", None, "error"),
    ("get", "/api/v1/recipients?email=a%00b", None, "email"),
    ("get", "/api/v1/notifications?a%00=1", None, "query"),
    ("put", "/api/v1/recipients/u1", {"name": "A\u0000"}, "name"),
    ("put", "/api/v1/recipients/u1", {"data": {"plans": ["pro", "x\u0000"]}}, "data.plans[1]"),
    ("put", "/api/v1/recipients/u1", {"data": {"pl\u0000an": 1}}, "data"),
    ("put", "/api/v1/recipients/u1", {"data": {"plan": "\ud800"}}, "data.plan"),
    ("put", "/api/v1/recipients/u1", {"data": {"\udfff": 1}}, "data"),
    ("post", "/api/v1/notifications", {"recipient": "a\u0000", "channels": ["sms"], "content": SMS}, "recipient"),
    (
        "post",
        "/api/v1/notifications",
        {"recipient": "ada", "channels": ["sms"], "content": SMS, "data": {"code": "1\u0000"}},
        "data.code",
    ),
    (
        "post",
        "/api/v1/notifications",
        {"recipient": "ada", "channels": ["sms"], "content": SMS, "metadata": {"m": "\u0000"}},
        "metadata.m",
    ),
    (
        "post",
        "/api/v1/notifications",
        {"recipient": "ada", "channels": ["sms"], "content": {"sms": {"text": "Hi\u0000"}}},
        "content.sms.text",
    ),
    ("post", "/api/v1/templates", {"code": "t", "channels": {"sms": {"text": "Hi\u0000"}}}, "channels.sms.text"),
    (
        "post",
        "/api/v1/providers",
        {"channel": "email", "kind": "smtp", "name": "p", "config": {**SMTP, "host": "smtp\u0000.example.com"}},
        "config.host",
    ),
    ("post", "/api/v1/recipients/ada/devices", {"platform": "fcm", "token": "tok\u0000"}, "token"),
    (
        "post",
        "/notify",
        {"recipient_id": "ada", "notification_type": "alert", "channel": "sms", "content": "Hi\u0000"},
        "content",
    ),
    ("post", "/register", {"service_name": "a\u0000", "notification_types": ["alert"]}, "service_name"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), NUL_REQUESTS)
def test_a_nul_or_lone_surrogate_anywhere_is_a_400_naming_the_field(owner, ada, method, path, body, field):
    before = stored_rows()

    response = call(owner, method, path, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_characters"
    assert error["details"]["field"] == field
    assert field in error["message"]
    assert stored_rows() == before


def test_a_nul_character_in_a_header_is_a_400(owner, ada):
    body = {"recipient": "ada", "channels": ["sms"], "content": SMS}

    response = owner.post("/api/v1/notifications", body, format="json", HTTP_IDEMPOTENCY_KEY="k\x00")

    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "Idempotency-Key"
    assert not Notification.objects.exists()


def test_an_escaped_backslash_before_u0000_is_plain_text(owner):
    response = owner.put("/api/v1/recipients/u1", '{"name": "C:\\\\u0000"}', content_type="application/json")

    assert response.status_code == 201, response.content
    assert Recipient.objects.get().name == "C:\\u0000"


def test_an_outsider_gets_404_not_a_hint_from_the_input_check(owner, outsider, ada):
    assert outsider.get("/api/v1/recipients/ada").status_code == 404
    assert outsider.get("/api/v1/recipients/ada?email=a").status_code == 404
    assert owner.get("/api/v1/recipients/ada").status_code == 200


# --- numbers ---------------------------------------------------------------------------------

SEND = '{"recipient": "ada", "channels": ["sms"], "content": {"sms": {"text": "Hi"}}, %s}'


@pytest.mark.parametrize(
    ("method", "path", "text", "field"),
    [
        # Python reads 1e400 as infinity, which json.dumps writes as `Infinity`: not JSON, and
        # PostgreSQL refused the jsonb (a 500), or the response could not be rendered.
        ("post", "/api/v1/notifications", SEND % '"data": {"amount": 1e400}', "data.amount"),
        ("post", "/api/v1/notifications", SEND % '"metadata": {"m": [-1e999]}', "metadata.m[0]"),
        ("put", "/api/v1/recipients/u1", '{"data": {"n": 1e400}}', "data.n"),
        ("post", "/api/v1/templates/render", '{"content": {}, "data": {"n": 1e400}}', "data.n"),
    ],
)
def test_a_number_no_double_can_hold_is_a_400_naming_the_field(owner, ada, method, path, text, field):
    before = stored_rows()

    response = getattr(owner, method)(path, text, content_type="application/json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "number_out_of_range"
    assert error["details"]["field"] == field
    assert stored_rows() == before


# --- depth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/notifications"),
        ("put", "/api/v1/recipients/u1"),
        ("post", "/api/v1/templates"),
        ("post", "/api/v1/providers"),
        ("post", "/api/v1/recipients/ada/devices"),
        ("post", "/register"),
        ("post", "/notify"),
    ],
)
def test_json_nested_5000_deep_is_a_400_on_every_json_endpoint(owner, ada, method, path):
    before = stored_rows()

    response = getattr(owner, method)(path, deep_json(5000), content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "too_deep"
    assert stored_rows() == before


def test_json_at_the_depth_limit_is_accepted_and_one_deeper_is_not(owner, settings):
    settings.ALERTFLOW_JSON_MAX_DEPTH = 8
    # The body is level 1 and `data` level 2: seven levels of data reach the limit.
    at_limit = owner.put("/api/v1/recipients/u1", {"data": nested(7)}, format="json")
    too_deep = owner.put("/api/v1/recipients/u2", {"data": nested(8)}, format="json")

    assert at_limit.status_code == 201, at_limit.content
    assert too_deep.status_code == 400
    error = too_deep.json()["error"]
    assert error["code"] == "too_deep"
    assert error["details"] == {"field": "data.a.a.a.a.a.a.a", "limit": 8}
    assert not Recipient.objects.filter(external_id="u2").exists()


def test_lists_count_as_levels(owner, settings):
    settings.ALERTFLOW_JSON_MAX_DEPTH = 4

    response = owner.put("/api/v1/recipients/u1", {"data": {"a": [[[1]]]}}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "data.a[0][0]"


def test_data_nested_900_deep_is_refused_at_accept_not_dead_lettered_later(owner, ada):
    body = json.dumps({"recipient": "ada", "channels": ["sms"], "content": SMS})
    body = body[:-1] + ', "data": ' + deep_json(900) + "}"

    response = owner.post("/api/v1/notifications", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_deep"
    assert not Notification.objects.exists()


def test_an_fcm_service_account_nested_500_deep_is_a_400(owner):
    config = {"service_account": deep_json(500)}
    body = {"channel": "push", "kind": "fcm", "name": "fcm", "config": config}

    response = owner.post("/api/v1/providers", body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "too_deep"
    assert error["details"]["field"].startswith("config.service_account.a.a")
    assert not Provider.objects.exists()


def test_a_webpush_token_holding_json_is_checked_like_a_body(owner, ada):
    token = json.dumps({"endpoint": "https://push.example.com/\u0000", "keys": {"p256dh": "k", "auth": "a"}})

    response = owner.post("/api/v1/recipients/ada/devices", {"platform": "webpush", "token": token}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_characters"
    assert error["details"]["field"] == "token.endpoint"
    assert not Device.objects.exists()


def test_the_checks_run_without_credentials_too(anonymous):
    assert anonymous.get("/api/v1/recipients/a%00").json()["error"]["code"] == "invalid_characters"
    response = anonymous.post("/register", deep_json(5000), content_type="application/json")
    assert response.json()["error"]["code"] == "too_deep"
