import re
import uuid

from django.conf import settings

from .errors import ApiError, error_response
from .input_limits import check_request
from .logging import request_id_var

# A client-sent id is kept only if it cannot break a log line or a header.
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Tag every request with an id (the client's `X-Request-ID` if sane) and echo it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        sent = request.headers.get("X-Request-ID", "")
        request_id = sent if SAFE_REQUEST_ID.match(sent) else uuid.uuid4().hex
        request.request_id = request_id
        # Not reset on the way out: Django logs the response (django.request) after the
        # middleware returns, and that line should carry the id too. The next request sets its own.
        request_id_var.set(request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class BodySizeLimitMiddleware:
    """Refuse bodies over ALERTFLOW_MAX_BODY_BYTES with 413 before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "bad_request", "Content-Length is not a number.")
        limit = settings.ALERTFLOW_MAX_BODY_BYTES
        if length > limit:
            return error_response(
                413, "payload_too_large", f"The request body is {length} bytes; the limit is {limit}.", {"limit": limit}
            )
        return self.get_response(request)


class RequestInputMiddleware:
    """Refuse a NUL or lone surrogate in the path, the query or a header with 400
    `invalid_characters`.

    PostgreSQL cannot compare or store one, so it would otherwise surface as a 500 from whichever
    query first used the value. JSON bodies are checked by alertflow.input_limits.JSONParser.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            check_request(request)
        except ApiError as error:
            return error_response(error.status_code, error.error_code, str(error.detail), error.details)
        return self.get_response(request)
