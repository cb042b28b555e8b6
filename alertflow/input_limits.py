"""Input the database cannot store or Python cannot walk, refused at the edge for every route.

PostgreSQL text and jsonb cannot hold U+0000, UTF-8 cannot encode a lone surrogate (JSON's
`"\\ud800"` decodes to one), and Python's json module (and everything that later walks what it
returns: serializers, the renderer's context, json.dumps) recurses once per nesting level. So
every request is checked here, before any view sees it:

- the path, the query string and the headers, by `RequestInputMiddleware` (alertflow.middleware);
- JSON bodies, by `JSONParser` (the only parser the API uses, config/settings.py);
- JSON that arrives inside a string (an FCM service account, a Web Push subscription, an inbox
  websocket frame), by `loads`, which the code reading those calls.

A number past the range of a double (`1e400`) is refused too: Python reads it as infinity, which
json.dumps writes as `Infinity`, which is not JSON, so PostgreSQL refused it as jsonb (a 500).

A refusal is a 400 naming the field: `invalid_characters` for either character, `too_deep` for
nesting past ALERTFLOW_JSON_MAX_DEPTH levels (the body itself is level 1), `number_out_of_range`
for such a number.
"""

import json
import math
import re
from typing import Any

from django.conf import settings
from rest_framework import parsers

from .errors import ApiError

# NUL, and the UTF-16 surrogates that are never characters on their own.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
ROOT = "body"


def invalid_characters(field: str, character: str, *, in_key: bool = False) -> ApiError:
    where = f"{field} has a key that contains" if in_key else f"{field} contains"
    return ApiError(
        400,
        "invalid_characters",
        f"{where} U+{ord(character):04X}, which cannot be stored (NUL and lone surrogates are refused).",
        {"field": field},
    )


def too_deep(field: str) -> ApiError:
    limit = settings.ALERTFLOW_JSON_MAX_DEPTH
    return ApiError(
        400, "too_deep", f"{field} is nested deeper than the limit of {limit} levels.", {"field": field, "limit": limit}
    )


def out_of_range(field: str) -> ApiError:
    return ApiError(
        400,
        "number_out_of_range",
        f"{field} holds a number past the range of a double (about 1.8e308), which cannot be stored.",
        {"field": field},
    )


def check_json(value: Any, field: str = "") -> None:
    """Raise ApiError if parsed JSON holds an UNSTORABLE character in a string or key, a number
    no double can hold, or nests too deep.

    `field` names `value` in the messages (`token`, `config.service_account`); empty means the
    request body. Nested fields are named `data.items[2].name`.
    """
    _check(value, field, 1, settings.ALERTFLOW_JSON_MAX_DEPTH)


def _check(value: Any, path: str, depth: int, limit: int) -> None:
    if isinstance(value, str):
        if found := UNSTORABLE.search(value):
            raise invalid_characters(path or ROOT, found.group())
    elif isinstance(value, dict):
        if depth > limit:
            raise too_deep(path or ROOT)
        for key, item in value.items():
            if found := UNSTORABLE.search(key):
                raise invalid_characters(path or ROOT, found.group(), in_key=True)
            _check(item, f"{path}.{key}" if path else key, depth + 1, limit)
    elif isinstance(value, list):
        if depth > limit:
            raise too_deep(path or ROOT)
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1, limit)
    elif isinstance(value, float) and not math.isfinite(value):
        raise out_of_range(path or ROOT)


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


def check_request(request) -> None:
    """Raise ApiError `invalid_characters` for an UNSTORABLE character in the path, a query
    parameter (name or value) or a header."""
    parts = [("path", request.path_info)]
    for key, values in request.GET.lists():
        parts.append(("query", key))
        parts.extend((key, value) for value in values)
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str):
            parts.append((key.removeprefix("HTTP_").replace("_", "-").title(), value))
    for field, text in parts:
        if found := UNSTORABLE.search(text):
            raise invalid_characters(field, found.group())
