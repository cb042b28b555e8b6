"""A seam for the seed adapters (notifications/compat), which this app may not import.

Clients of the systems AlertFlow replaces send their own template bodies to `POST /templates`
and `PUT /templates/{code}`. An adapter registered here (from an AppConfig.ready) is asked
first: it takes `(view, request, code)` (`code` is None on create) and returns the Response
when the body is its system's, or None to leave the request to AlertFlow's own handling.
"""

from collections.abc import Callable

from rest_framework.response import Response

BodyAdapter = Callable[..., Response | None]

_adapters: list[BodyAdapter] = []


def register_body_adapter(adapter: BodyAdapter) -> BodyAdapter:
    if adapter not in _adapters:
        _adapters.append(adapter)
    return adapter


def adapted(view, request, code: str | None = None) -> Response | None:
    """The first registered adapter's answer to this request, or None when none claims it."""
    for adapter in _adapters:
        response = adapter(view, request, code)
        if response is not None:
            return response
    return None
