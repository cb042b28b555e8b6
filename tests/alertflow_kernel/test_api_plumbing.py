"""The kernel every endpoint shares: error shape, request ids, throttling, health, docs."""

import pytest
from rest_framework.test import APIClient

from alertflow import redis as alertflow_redis
from alertflow import throttling

pytestmark = pytest.mark.django_db


def test_every_response_carries_a_request_id(anonymous):
    response = anonymous.get("/api/v1/health")

    assert len(response["X-Request-ID"]) == 32


def test_a_sane_client_request_id_is_echoed(anonymous):
    response = anonymous.get("/api/v1/health", HTTP_X_REQUEST_ID="req-abc.123")

    assert response["X-Request-ID"] == "req-abc.123"


def test_an_unsafe_client_request_id_is_replaced(anonymous):
    response = anonymous.get("/api/v1/health", HTTP_X_REQUEST_ID="bad id\r\nSet-Cookie: x")

    assert response["X-Request-ID"] != "bad id\r\nSet-Cookie: x"
    assert len(response["X-Request-ID"]) == 32


def test_unknown_url_is_404_in_error_shape(anonymous):
    response = anonymous.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "X-Request-ID" in response


def test_wrong_method_is_405_in_error_shape(owner):
    response = owner.put("/api/v1/categories", {}, format="json")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "Allow" in response


def test_body_over_the_limit_is_413(anonymous, settings):
    settings.ALERTFLOW_MAX_BODY_BYTES = 100

    response = anonymous.post("/register", {"service_name": "x" * 200, "notification_types": []}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_tenant_throttle_answers_429_with_retry_after(owner, throttle_rates):
    throttle_rates(tenant="3/min")

    statuses = [owner.get("/api/v1/categories").status_code for _ in range(4)]
    response = owner.get("/api/v1/categories")

    assert statuses == [200, 200, 200, 429]
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response["Retry-After"]) > 0


def test_a_throttle_window_is_one_command_a_request_and_its_lifetime_is_set_once(owner, throttle_rates, monkeypatch):
    """The window's first request gives its counter a lifetime; the others only count."""
    throttle_rates(tenant="100/min")
    sent = []

    class Recording:
        def __init__(self, redis):
            self.redis = redis

        def __getattr__(self, name):
            sent.append(name)
            return getattr(self.redis, name)

    monkeypatch.setattr(throttling, "client", lambda: Recording(alertflow_redis.client()))

    for _ in range(3):
        assert owner.get("/api/v1/categories").status_code == 200

    assert sent == ["incr", "expire", "incr", "incr"]
    [key] = alertflow_redis.client().keys("af:throttle:*")
    assert 0 < alertflow_redis.client().ttl(key) <= 61


def test_throttle_is_per_tenant(owner, outsider, throttle_rates):
    throttle_rates(tenant="1/min")

    assert owner.get("/api/v1/categories").status_code == 200
    assert owner.get("/api/v1/categories").status_code == 429
    assert outsider.get("/api/v1/categories").status_code == 200


def test_unexpected_error_is_500_in_error_shape(owner, monkeypatch):
    from tenants.views import CategoryViewSet

    def explode(self, request, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(CategoryViewSet, "list", explode)
    client = APIClient(raise_request_exception=False)
    client.credentials(**owner._credentials)

    response = client.get("/api/v1/categories")

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "boom" not in response.content.decode()


def test_liveness_answers_under_both_names(anonymous):
    assert anonymous.get("/api/v1/health").json() == {"status": "ok"}
    assert anonymous.get("/api/v1/health/live").json() == {"status": "ok"}


def test_readiness_checks_database_and_redis(anonymous):
    response = anonymous.get("/api/v1/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readiness_is_503_when_redis_is_unreachable(anonymous, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = anonymous.get("/api/v1/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("error")


def test_throttle_fails_open_when_redis_is_down(owner, settings, throttle_rates):
    throttle_rates(tenant="1/min")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    assert [owner.get("/api/v1/categories").status_code for _ in range(3)] == [200, 200, 200]


def test_openapi_schema_and_docs_are_served(anonymous):
    schema = anonymous.get("/api/schema?format=json")
    docs = anonymous.get("/api/docs")

    assert schema.status_code == 200
    assert "/api/v1/register" in schema.json()["paths"]
    assert docs.status_code == 200


def test_openapi_schema_generates_without_warnings(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--file", str(tmp_path / "schema.yml"), "--fail-on-warn", "--validate")

    assert "/api/v1/notifications" in (tmp_path / "schema.yml").read_text()


def test_websocket_handshake_logs_do_not_carry_credentials():
    """uvicorn logs a handshake's path with its query string; config/asgi.py filters that logger."""
    import logging

    import config.asgi  # noqa: F401 (installs the filter)

    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/ws/inbox?token=rt_secret.value&after=1"), None,
    )  # fmt: skip
    for log_filter in logging.getLogger("uvicorn.error").filters:
        log_filter.filter(record)
    line = record.getMessage()
    assert "rt_secret" not in line
    assert "/ws/inbox?token=[redacted]&after=1" in line
    hmac_record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "GET /ws/inbox?tenant=t&recipient=r&hmac=abc123", None, None
    )
    from alertflow.logging import RedactCredentialsFilter

    RedactCredentialsFilter().filter(hmac_record)
    assert hmac_record.getMessage() == "GET /ws/inbox?tenant=t&recipient=r&hmac=[redacted]"
