"""The one error shape of the API: `{"error": {"code", "message", "details"}}` (DESIGN 6).

Every error, from DRF validation to an unexpected exception, leaves through `exception_handler`
or, for requests that never reach DRF (an unknown URL, a body too large), `error_response`.
"""

import logging
from http import HTTPStatus

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with a machine-readable code, raised by services and views.

    `ApiError(409, "last_owner", "A tenant keeps at least one owner.")`
    """

    def __init__(self, status_code: int, code: str, message: str, details: dict | None = None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details or {}


class TryAgain(ApiError):
    """A write refused before anything of it was kept: 503 with `code` and a Retry-After of
    `wait` seconds (DRF's `wait`), and the same request later may succeed. The operator console
    shows it as an error on the page (alertflow.admin.OperatorAdmin) instead of a 500."""

    def __init__(self, code: str, message: str, wait: int):
        super().__init__(503, code, message)
        self.wait = wait


# DRF's default codes, renamed where ours read better to a client.
CODE_NAMES = {
    "invalid": "validation_error",
    "parse_error": "invalid_json",
    "not_authenticated": "unauthorized",
    "authentication_failed": "unauthorized",
    "permission_denied": "forbidden",
    "not_found": "not_found",
    "method_not_allowed": "method_not_allowed",
    "not_acceptable": "not_acceptable",
    "unsupported_media_type": "unsupported_media_type",
    "throttled": "rate_limited",
}


def is_deadlock(exc: Exception) -> bool:
    """Whether a database error is PostgreSQL breaking a deadlock (SQLSTATE 40P01, "deadlock
    detected"): the transaction it aborted wrote nothing, and may be run again."""
    return getattr(exc.__cause__, "sqlstate", None) == "40P01"


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status_code: int, code: str, message: str, details: dict | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status_code)


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, ApiError):
        response = Response(error_body(exc.error_code, str(exc.detail), exc.details), status=exc.status_code)
    elif isinstance(exc, exceptions.ValidationError):
        response = Response(
            error_body("validation_error", validation_message(exc.detail), {"fields": exc.detail}),
            status=status.HTTP_400_BAD_REQUEST,
        )
    elif isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        response = Response(error_body(CODE_NAMES.get(code, code), str(exc.detail)), status=exc.status_code)
    else:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        response = Response(
            error_body("internal_error", "An unexpected error occurred; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    # Keep the headers DRF would have set (WWW-Authenticate, Retry-After, Allow). Imported here:
    # rest_framework.views loads the configured parser, which raises this module's ApiError.
    from rest_framework.views import exception_handler as drf_exception_handler

    default = drf_exception_handler(exc, context) if isinstance(exc, exceptions.APIException) else None
    if default is not None:
        for header in ("WWW-Authenticate", "Retry-After", "Allow"):
            if header in default:
                response[header] = default[header]
    if isinstance(exc, exceptions.Throttled) and "Retry-After" not in response:
        response["Retry-After"] = "1"
    return response


def validation_message(detail) -> str:
    """A one-line human summary of a DRF validation error: the first problem found."""
    if isinstance(detail, dict):
        for field, problems in detail.items():
            inner = validation_message(problems)
            return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return validation_message(detail[0])
    return str(detail) or "Invalid input."


# The errors Django itself answers (no URL matched, a server error...), in our words.
STATUS_ERRORS = {
    400: ("bad_request", "The request could not be understood."),
    403: ("forbidden", "You may not do this."),
    404: ("not_found", "No such resource."),
    405: ("method_not_allowed", "This method is not allowed here."),
    500: ("internal_error", "An unexpected error occurred; it has been logged."),
}


def status_error(status_code: int) -> JsonResponse:
    """The error-shape response for a bare status, when nothing more specific is known."""
    if status_code in STATUS_ERRORS:
        code, message = STATUS_ERRORS[status_code]
    else:
        try:
            phrase = HTTPStatus(status_code).phrase
        except ValueError:
            phrase = "Error"
        code, message = phrase.lower().replace(" ", "_").replace("-", "_"), f"{phrase}."
    return error_response(status_code, code, message)


def json_404(request, exception=None):
    return status_error(404)


def json_500(request):
    return status_error(500)


def json_400(request, exception=None):
    return status_error(400)


def json_403(request, exception=None):
    return status_error(403)
