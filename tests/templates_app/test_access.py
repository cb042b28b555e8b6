import pytest

from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

CHANNELS = {"sms": {"text": "Hi {{ name }}"}}


@pytest.fixture
def template(tenant):
    return TemplateFactory(tenant=tenant, code="t", channels=CHANNELS)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/templates", None),
        ("get", "/api/v1/templates/t", None),
        ("get", "/api/v1/templates/t/versions", None),
        ("post", "/api/v1/templates/t/render", {"channel": "sms", "data": {"name": "Ada"}}),
    ],
)
def test_member_may_read_and_render(template, member, method, path, body):
    response = getattr(member, method)(path, body, format="json")

    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/templates", {"code": "new", "channels": CHANNELS}),
        ("put", "/api/v1/templates/t", {"channels": CHANNELS}),
        ("delete", "/api/v1/templates/t", None),
    ],
)
def test_member_may_not_write(template, member, method, path, body):
    response = getattr(member, method)(path, body, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert template.versions.count() == 1


def test_anonymous_is_401(template, anonymous):
    assert anonymous.get("/api/v1/templates/t").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/templates/t", None),
        ("put", "/api/v1/templates/t", {"channels": CHANNELS}),
        ("delete", "/api/v1/templates/t", None),
        ("get", "/api/v1/templates/t/versions", None),
        ("post", "/api/v1/templates/t/render", {"channel": "sms"}),
    ],
)
def test_outsider_gets_404(template, outsider, method, path, body):
    response = getattr(outsider, method)(path, body, format="json")

    assert response.status_code == 404
    template.refresh_from_db()
    assert (template.deleted, template.version) == (None, 1)


def test_outsider_lists_none_and_may_reuse_the_code(template, outsider):
    assert outsider.get("/api/v1/templates").json()["count"] == 0
    assert outsider.post("/api/v1/templates", {"code": "t", "channels": CHANNELS}, format="json").status_code == 201
