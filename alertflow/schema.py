"""OpenAPI: every operation documents the errors it can answer, in the one error shape.

drf-spectacular documents success statuses only. `AutoSchema` adds the error statuses each
operation can give, each with the `Error` component (`{"error": {"code", "message", "details"}}`,
alertflow/errors.py), so a client generated from /api/schema knows every answer it can get.
Most statuses follow from how the view is built (authentication, role, path id, request body,
throttles); the rest, which only the view's logic knows (a 409 conflict, a 422), the view
declares by action (or HTTP method, for an APIView; `"action.method"` for one method of an
action that takes several):

    extra_error_statuses = {"destroy": {409}, "preferences.put": {503}}
"""

from http import HTTPStatus

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers
from rest_framework.viewsets import ViewSetMixin

from .choices import Role, role_at_least
from .permissions import RolePermission

# What each error status means here, and the codes a client may find in it.
ERROR_DESCRIPTIONS = {
    400: "The request is invalid: `validation_error` (with `details.fields`), `invalid_json`, or a code "
    "naming the problem.",
    401: "No API key, or an invalid, expired or revoked one: `unauthorized`.",
    403: "The caller may not do this: `forbidden` (the key's role), or a code naming the reason.",
    404: "No such object in this tenant (another tenant's objects are never revealed): `not_found`.",
    409: "The request conflicts with the object's current state; the code names the conflict.",
    411: "A chunked request body the server cannot read: `length_required` (send a Content-Length).",
    413: "The request body is over the size limit: `payload_too_large`.",
    415: "The request body is not JSON: `unsupported_media_type`.",
    422: "The request is valid but cannot be carried out; the code names why.",
    429: "Too many requests: `rate_limited`. `Retry-After` says when to try again.",
    503: "A write other processes must hear of through Redis, refused while Redis is unreachable; nothing was "
    "written (alertflow.redis.WriteRefused): `keys_unavailable`, `preferences_unavailable` or "
    "`suppressions_unavailable`. `Retry-After` says when to try again.",
}
# The statuses whose answer carries a Retry-After header.
RETRY_AFTER_STATUSES = {429, 503}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, snake_case: `validation_error`, `not_found`, ...")
    message = serializers.CharField(help_text="What went wrong, for a person.")
    details = serializers.DictField(help_text="Facts about the error, e.g. `fields` for a validation error.")


class ErrorSerializer(serializers.Serializer):
    """The body of every error response."""

    error = ErrorDetailSerializer()


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status in sorted(self.error_statuses()):
            response = self._get_response_for_code(ErrorSerializer, str(status), direction=direction)
            response["description"] = f"{HTTPStatus(status).phrase}. {ERROR_DESCRIPTIONS[status]}"
            if status in RETRY_AFTER_STATUSES:
                response["headers"] = {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}
                }
            responses.setdefault(str(status), response)
        return responses

    def error_statuses(self) -> set[int]:
        """The error statuses this operation can answer."""
        statuses = {400}  # any request can be malformed (a bad Content-Length, bad characters, bad input)
        if self.requires_key():
            statuses.add(401)
            if self.required_role_can_be_missing():
                statuses.add(403)
        if "{" in self.path or self.is_paginated_list():
            statuses.add(404)  # no such object, or no such page
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            statuses |= {411, 413, 415}
        if self.view.get_throttles():
            statuses.add(429)
        return statuses | self.declared_error_statuses()

    def requires_key(self) -> bool:
        return any(requirement for requirement in self.get_auth())

    def required_role_can_be_missing(self) -> bool:
        """A key of the lowest role is refused unless the view lets every role do this."""
        return any(
            isinstance(permission, RolePermission)
            and not role_at_least(Role.MEMBER, permission.required_role(self.method, self.view))
            for permission in self.view.get_permissions()
        )

    def is_paginated_list(self) -> bool:
        return self.method == "GET" and self._is_list_view() and self._get_paginator() is not None

    def declared_error_statuses(self) -> set[int]:
        declared = getattr(self.view, "extra_error_statuses", {})
        handler = self.view.action if isinstance(self.view, ViewSetMixin) else self.method.lower()
        statuses = set(declared.get(handler, ())) | set(declared.get(f"{handler}.{self.method.lower()}", ()))
        if statuses - set(ERROR_DESCRIPTIONS):
            raise ValueError(f"{self.view.__class__.__name__}: describe {statuses} in ERROR_DESCRIPTIONS first.")
        return statuses
