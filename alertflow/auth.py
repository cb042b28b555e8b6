"""API key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

The kernel reads the credential; who a key belongs to is the tenants app's to say. The lookup
is the function named by `settings.ALERTFLOW_API_KEY_LOOKUP` (config wires in
`tenants.auth.authenticate_key`), so the kernel imports no app above it (DESIGN section 2).
"""

from django.conf import settings
from django.utils.module_loading import import_string
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions


def bearer_credential(request, what: str) -> str | None:
    """The value of `Authorization: Bearer <value>`, or None without an Authorization header.

    Raises AuthenticationFailed for another scheme or an empty value, naming `what` is expected.
    """
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise exceptions.AuthenticationFailed(f"Use `Authorization: Bearer <{what}>`.")
    return value.strip()


def unusable_key() -> exceptions.AuthenticationFailed:
    """The 401 for an API key no request may use (unknown, expired, revoked, or its tenant
    deactivated or deleted), also raised by a request whose tenant went while it ran."""
    return exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        secret = self.credential(request)
        if secret is None:
            return None
        # Takes the secret, returns DRF's `(user, auth)` or None for no usable key.
        found = import_string(settings.ALERTFLOW_API_KEY_LOOKUP)(secret)
        if found is None:
            raise unusable_key()
        return found

    @staticmethod
    def credential(request) -> str | None:
        value = bearer_credential(request, "api key")
        if value is not None:
            return value
        value = request.headers.get("X-API-Key", "").strip()
        return value or None

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An AlertFlow API key (`af_…`)."}
