"""Input the database cannot store or Python cannot walk, refused at the edge for every route.

PostgreSQL text and jsonb cannot hold U+0000, and Python's json module (and everything that
later walks what it returns: serializers, the renderer's context, json.dumps) recurses once per
nesting level. So every request is checked here, before any view sees it:

- the path, the query string and the headers, by `RequestInputMiddleware` (alertflow.middleware);
- JSON bodies, by `JSONParser` (the only parser the API uses, config/settings.py);
- JSON that arrives inside a string field (an FCM service account, a Web Push subscription), by
  `loads`, which the serializers of those fields call.

A refusal is a 400 naming the field: `invalid_characters` for a NUL, `too_deep` for nesting past
ALERTFLOW_JSON_MAX_DEPTH levels (the body itself is level 1).
"""

import json
from typing import Any

from django.conf import settings
from rest_framework import parsers

from .errors import ApiError

NUL = "\x00"
ROOT = "body"


def invalid_characters(field: str, *, in_key: bool = False) -> ApiError:
    where = f"{field} has a key that contains" if in_key else f"{field} contains"
    return ApiError(
        400,
        "invalid_characters",
        f"{where} a NUL character (U+0000), which cannot be stored.",
        {"field": field},
    )


def too_deep(field: str) -> ApiError:
    limit = settings.ALERTFLOW_JSON_MAX_DEPTH
    return ApiError(
        400, "too_deep", f"{field} is nested deeper than the limit of {limit} levels.", {"field": field, "limit": limit}
    )


def check_json(value: Any, field: str = "") -> None:
    """Raise ApiError if parsed JSON holds a NUL in a string or key, or nests too deep.

    `field` names `value` in the messages (`token`, `config.service_account`); empty means the
    request body. Nested fields are named `data.items[2].name`.
    """
    _check(value, field, 1, settings.ALERTFLOW_JSON_MAX_DEPTH)


def _check(value: Any, path: str, depth: int, limit: int) -> None:
    if isinstance(value, str):
        if NUL in value:
            raise invalid_characters(path or ROOT)
    elif isinstance(value, dict):
        if depth > limit:
            raise too_deep(path or ROOT)
        for key, item in value.items():
            if NUL in key:
                raise invalid_characters(path or ROOT, in_key=True)
            _check(item, f"{path}.{key}" if path else key, depth + 1, limit)
    elif isinstance(value, list):
        if depth > limit:
            raise too_deep(path or ROOT)
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1, limit)


def loads(text: str, field: str) -> Any:
    """`json.loads` for JSON held in a string field, checked like a request body.

    Raises ValueError for text that is not JSON, ApiError `too_deep`/`invalid_characters`
    naming `field` for JSON the API refuses.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise too_deep(field) from None
    check_json(value, field)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing what `check_json` refuses before any serializer sees it."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # The C decoder gives up near the interpreter's recursion limit, far past ours.
            raise too_deep(ROOT) from None
        check_json(data)
        return data


def nul_in_request(request) -> str | None:
    """The name of the first path, query or header part holding a NUL, or None."""
    if NUL in request.path_info:
        return "path"
    for key, values in request.GET.lists():
        if NUL in key:
            return "query"
        if any(NUL in value for value in values):
            return key
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str) and NUL in value:
            return key.removeprefix("HTTP_").replace("_", "-").title()
    return None
