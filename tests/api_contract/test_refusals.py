"""The API against its schema while Redis is unreachable: a write other processes must hear of
through Redis is refused (503 with a code and Retry-After, alertflow.redis.WriteRefused), and
/api/schema must document that answer for every operation that can give it, as it documents
every other (test_schema_fuzz.py runs with Redis up, so it never meets these).

Two tests: every write known to be refused, with a valid request, must answer the documented
503; and the schema's writes, fuzzed with Redis down, must answer nothing undocumented (a
refusal no one listed, or a 500).
"""

import copy

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from .conftest import REAL_IDS
from .test_schema_fuzz import CHECKS, call_rolled_back, schema, served_schema

# The fuzz's checks but "not a server error": a refusal is a 503, documented; a 500 is not
# documented anywhere, so status_code_conformance still fails it.
DOCUMENTED = [check for check in CHECKS if check is not not_a_server_error]

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def redis_down(settings):
    """Redis out of reach for the versions, throttles, marks (REDIS_URL) and Django's cache."""

    def down() -> None:
        caches = copy.deepcopy(django_settings.CACHES)
        caches["default"]["LOCATION"] = UNREACHABLE
        settings.CACHES = caches
        settings.REDIS_URL = UNREACHABLE

    return down


def invite_token(owner_secret: str) -> str:
    """A new member's invitation, made while Redis is up."""
    case = schema["/api/v1/members/"]["POST"].Case(body={"email": "linus@example.com", "role": "member"})
    response = case.call(headers={"Authorization": f"Bearer {owner_secret}"})
    assert response.status_code == 201, response.content
    return response.json()["invite_token"]


# (method, path, its parameters by their REAL_IDS name, body, the refusal's code), as the tenant's owner.
REFUSED = [
    ("DELETE", "/api/v1/api-keys/{id}/", {"id": "id:api-keys"}, None, "keys_unavailable"),
    ("PATCH", "/api/v1/members/{id}/", {"id": "id:members"}, {"role": "admin"}, "keys_unavailable"),
    ("DELETE", "/api/v1/members/{id}/", {"id": "id:members"}, None, "keys_unavailable"),
    (
        "PUT",
        "/api/v1/recipients/{external_id}/preferences/",
        {"external_id": "external_id"},
        {"channels": {"email": False}},
        "preferences_unavailable",
    ),
    (
        "PUT",
        "/api/v1/users/{user_id}/preferences",
        {"user_id": "external_id"},
        {"email": False},
        "preferences_unavailable",
    ),
    (
        "PUT",
        "/api/v1/users/{user_id}/",
        {"user_id": "external_id"},
        {"preferences": {"email": False, "push": True}},
        "preferences_unavailable",
    ),
    (
        "POST",
        "/api/v1/users/",
        {},
        {"name": "Linus", "email": "linus@example.com", "preferences": {"email": False, "push": True}},
        "preferences_unavailable",
    ),
    ("POST", "/preferences", {}, {"recipient_id": "ada", "channels": {"email": False}}, "preferences_unavailable"),
    (
        "POST",
        "/api/v1/suppressions/",
        {},
        {"channel": "email", "address": "bob@example.com"},
        "suppressions_unavailable",
    ),
    (
        "POST",
        "/api/v1/suppressions/import/",
        {},
        {"channel": "email", "addresses": ["bob@example.com"]},
        "suppressions_unavailable",
    ),
]


def assert_documented_refusal(case, response, code: str) -> None:
    assert response.status_code == 503, (case.operation.label, response.content)
    assert response.json()["error"]["code"] == code
    assert int(response.headers["retry-after"][0]) > 0
    documented = served_schema()["paths"][case.operation.path][case.method.lower()]["responses"]["503"]
    assert "Retry-After" in documented["headers"]
    case.validate_response(response, checks=DOCUMENTED)


@pytest.mark.parametrize(("method", "path", "names", "body", "code"), REFUSED, ids=[f"{r[0]} {r[1]}" for r in REFUSED])
def test_a_refused_write_is_a_documented_503(method, path, names, body, code, credentials, redis_down):
    operation = schema[path][method]
    path_parameters = {name: REAL_IDS[real] for name, real in names.items()}
    case = operation.Case(path_parameters=path_parameters, **({} if body is None else {"body": body}))
    redis_down()
    response = case.call(headers={"Authorization": f"Bearer {credentials['ApiKey']}"})
    assert_documented_refusal(case, response, code)


def test_an_inbox_preference_write_is_a_documented_503(credentials, redis_down):
    case = schema["/api/v1/inbox/preferences"]["PUT"].Case(body={"channels": {"email": False}})
    redis_down()
    response = case.call(headers={"Authorization": f"Bearer {credentials['RecipientToken']}"})
    assert_documented_refusal(case, response, "preferences_unavailable")


def test_accepting_an_invitation_needs_no_redis(credentials, redis_down):
    """It writes only the password, which no cached key reads (tenants/signals.py)."""
    token = invite_token(credentials["ApiKey"])
    case = schema["/api/v1/auth/accept-invite"]["POST"].Case(body={"token": token, "password": "a long passphrase 42"})
    redis_down()
    assert case.call().status_code == 200


writes = schema.include(method=["POST", "PUT", "PATCH", "DELETE"])


@writes.parametrize()
@hypothesis_settings(
    max_examples=5,  # on top of the requests above: what a refusal no one listed would meet
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_write_with_redis_down_is_documented(case, credentials, redis_down):
    redis_down()
    case.validate_response(call_rolled_back(case, credentials), checks=DOCUMENTED)
