"""API key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from tenants import keys
from tenants.models import ApiKey, Tenant

# last_used is a hint for humans: write it at most this often, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, through one key, with one role. DRF's `request.user`."""

    tenant: Tenant
    key: ApiKey
    role: str

    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self):  # DRF's throttles and logs read `user.pk`
        return self.key.pk


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        secret = self.credential(request)
        if secret is None:
            return None
        key = keys.find(secret)
        if key is None or not key.usable or not key.tenant.active:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        now = timezone.now()
        if key.last_used is None or now - key.last_used > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used=now)
            key.last_used = now  # the cached copy too, or every request would write
        principal = Principal(tenant=key.tenant, key=key, role=key.effective_role)
        return principal, key

    @staticmethod
    def credential(request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise exceptions.AuthenticationFailed("Use `Authorization: Bearer <api key>`.")
            return value.strip()
        value = request.headers.get("X-API-Key", "").strip()
        return value or None

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An AlertFlow API key (`af_…`)."}
