"""/api/schema documents the error answers of each operation, in the one error shape."""

import pytest

pytestmark = pytest.mark.django_db

ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def schema(anonymous):
    return anonymous.get("/api/schema?format=json").json()


def documented(schema, method, path) -> dict:
    return schema["paths"][path][method]["responses"]


def test_error_shape_is_a_named_component(schema):
    components = schema["components"]["schemas"]

    assert components["Error"]["properties"] == {"error": {"$ref": "#/components/schemas/ErrorDetail"}}
    assert set(components["ErrorDetail"]["required"]) == {"code", "message", "details"}


def test_send_documents_every_error_it_can_answer(schema):
    responses = documented(schema, "post", "/api/v1/notifications/")

    assert sorted(responses) == ["202", "400", "401", "403", "404", "409", "411", "413", "415", "422", "429"]
    assert all(
        responses[status]["content"]["application/json"]["schema"] == ERROR_REF
        for status in responses
        if status != "202"
    )
    assert "Retry-After" in responses["429"]["headers"]


def test_read_open_to_every_role_has_no_403_and_list_has_404_only_for_pages(schema):
    responses = documented(schema, "get", "/api/v1/recipients/")

    assert sorted(responses) == ["200", "400", "401", "404", "429"]


def test_owner_only_read_documents_403(schema):
    assert "403" in documented(schema, "get", "/api/v1/api-keys/")


def test_public_endpoints_document_no_401_unless_they_answer_it(schema):
    assert "401" not in documented(schema, "post", "/api/v1/register")
    assert "401" in documented(schema, "post", "/api/v1/auth/login")  # wrong password
    assert sorted(documented(schema, "get", "/api/v1/health")) == ["200", "400"]


def test_conflicts_are_documented_where_they_exist(schema):
    assert "409" in documented(schema, "delete", "/api/v1/members/{id}/")  # the last owner
    assert "409" not in documented(schema, "delete", "/api/v1/topics/{key}/")


def test_bodyless_operations_document_no_body_errors(schema):
    responses = documented(schema, "post", "/api/v1/notifications/{id}/cancel/")

    assert not {"411", "413", "415"} & set(responses)


def test_inbox_action_pattern_is_anchored_around_every_action(schema):
    parameters = schema["paths"]["/api/v1/inbox/{message_id}/{action}/"]["post"]["parameters"]
    [action] = [p for p in parameters if p["name"] == "action"]

    assert action["schema"]["pattern"] == "^(?:read|unread|seen|archive|unarchive|snooze)$"


def test_a_refused_write_is_documented_on_the_method_that_writes(schema):
    # The preferences action answers GET and PUT; only the PUT is refused while Redis is down.
    path = "/api/v1/recipients/{external_id}/preferences/"
    assert "503" in documented(schema, "put", path)
    assert "Retry-After" in documented(schema, "put", path)["503"]["headers"]
    assert "503" not in documented(schema, "get", path)
