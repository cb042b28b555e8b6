import io
import re
import uuid

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import JsonResponse
from django.urls import reverse

from . import metrics
from .errors import ApiError, error_response, status_error
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


class RequestMetricsMiddleware:
    """Count every answered request by URL pattern, method and status (the accept error rate of
    the README's alerts). After RequestIdMiddleware, so it sees the final status of errors too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        # A DRF router's patterns are regexes (`api/v1/notifications/?$`): label the path part.
        route = route.removeprefix("^").removesuffix("$").removesuffix("/?")
        method = request.method if request.method in KNOWN_METHODS else "other"
        metrics.HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        return response


# Anything else a client sends is one label value, not one each.
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def body_is_chunked(transfer_encoding: str) -> bool:
    """Whether a request's body comes in chunks, its size unknown until it is read."""
    return "chunked" in transfer_encoding.lower()


def over_body_limit(length: int) -> bool:
    return length > settings.ALERTFLOW_MAX_BODY_BYTES


def payload_too_large(description: str) -> JsonResponse:
    limit = settings.ALERTFLOW_MAX_BODY_BYTES
    return error_response(
        413, "payload_too_large", f"The request body is {description}; the limit is {limit}.", {"limit": limit}
    )


class BodySizeLimitMiddleware:
    """Refuse bodies over ALERTFLOW_MAX_BODY_BYTES with 413 before anything reads them.

    A chunked body has no Content-Length, and Django sizes a request's stream from that header
    alone: left as is, the view would read an empty body. It is read here instead, up to the
    limit, when the server says the input ends where the body does (`wsgi.input_terminated`,
    which gunicorn sets); a server that cannot say so gets 411, never an empty body.
    A refused body is left unread, so the server closes the connection after answering
    (config/gunicorn.py): the rest of the body must not be read as the next request.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if body_is_chunked(request.headers.get("Transfer-Encoding", "")):
            refusal = self.read_chunked(request)
            if refusal is not None:
                return refusal
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "bad_request", "Content-Length is not a number.")
        if over_body_limit(length):
            return payload_too_large(f"{length} bytes")
        return self.get_response(request)

    def read_chunked(self, request) -> JsonResponse | None:
        if not request.environ.get("wsgi.input_terminated"):
            return error_response(
                411, "length_required", "Send a Content-Length with the body: this server cannot read a chunked one."
            )
        limit = settings.ALERTFLOW_MAX_BODY_BYTES
        body = request.environ["wsgi.input"].read(limit + 1)
        if over_body_limit(len(body)):
            return payload_too_large(f"more than {limit} bytes")
        # What Django's WSGIRequest would have built had the client sent a Content-Length.
        request.META["CONTENT_LENGTH"] = str(len(body))
        request._stream = LimitedStream(io.BytesIO(body), len(body))
        return None


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


# Headers of the replaced response a client still needs.
KEPT_ERROR_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


class JsonErrorMiddleware:
    """Every error leaves in the API's error shape whatever DEBUG is; the admin keeps its pages.

    With DEBUG on (`make run`), Django answers an unmatched URL (`%2F` in an id decodes to a `/`
    that no route takes) and an exception outside DRF with its HTML debug page, not with
    handler404/handler500: API clients and the seed-compatible routes must get JSON either way.
    The exception itself is still logged by Django before this sees the response.
    A view that answers people with an HTML page of its own, errors included (the one-click
    unsubscribe page, preferences/pages.py), marks the response `is_page = True`.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
            return response
        if getattr(response, "is_page", False):
            return response
        if request.path.startswith((reverse("admin:index"), settings.STATIC_URL)):
            return response
        replacement = status_error(response.status_code)
        for header in KEPT_ERROR_HEADERS:
            if header in response:
                replacement[header] = response[header]
        return replacement
