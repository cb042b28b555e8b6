"""Every /api/v1/ route is reached by its own paths: an include placed earlier (config/urls.py
puts the send's first, for speed) must never take another route's requests."""

import uuid

import pytest
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, resolve, reverse

# A value for each URL parameter name (a number where a pattern takes only digits).
SAMPLE_VALUES = {
    "pk": str(uuid.uuid4()),
    "run_id": str(uuid.uuid4()),
    "delivery_id": str(uuid.uuid4()),
    "message_id": str(uuid.uuid4()),
    "notification_id": str(uuid.uuid4()),
    "provider_id": str(uuid.uuid4()),
    "device_id": "7",
    "key": "a-key",
    "code": "a-code",
    "external_id": "user-1",
    "user_id": "user-1",
    "token": "a-token",
    "action": "read",
}
# The names whose patterns take digits in some apps (suppressions) and uuids in others.
DIGITS_MAY = {"pk"}


def _named_routes(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _named_routes(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield prefix + str(pattern.pattern), pattern


def _api_routes():
    routes = [(route, p) for route, p in _named_routes(get_resolver()) if route.startswith("api/v1/")]
    assert len(routes) > 40  # the walk found the API's routes
    return routes


@pytest.mark.parametrize(("route", "pattern"), _api_routes(), ids=lambda value: str(value))
def test_each_api_route_resolves_to_itself(route, pattern):
    kwargs = {name: SAMPLE_VALUES[name] for name in pattern.pattern.regex.groupindex}
    try:
        url = reverse(pattern.name, kwargs=kwargs)
    except NoReverseMatch:  # an id of digits
        url = reverse(
            pattern.name, kwargs={name: "7" if name in DIGITS_MAY else value for name, value in kwargs.items()}
        )
    assert resolve(url).url_name == pattern.name, f"{url} went to another route than {route}"
    # With the trailing slash the router accepts too, where the route takes one.
    if "/?" in str(pattern.pattern):
        assert resolve(url.rstrip("/") + "/").url_name == pattern.name


def test_the_send_and_the_fastapi_status_path_are_told_apart():
    notification = uuid.uuid4()
    assert resolve("/api/v1/notifications").url_name == "notification-list"
    assert resolve(f"/api/v1/notifications/{notification}").url_name == "notification-detail"
    assert resolve(f"/api/v1/notifications/{notification}/status").url_name == "fastapi-status"
    assert resolve("/api/v1/templates/render").url_name == "hng-template-render"
