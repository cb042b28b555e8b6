"""Who an API key is: the tenants side of `alertflow.auth.ApiKeyAuthentication`.

The kernel's DRF class reads the credential from the request and calls `authenticate_key`
through `settings.ALERTFLOW_API_KEY_LOOKUP`, so the kernel never imports this app (DESIGN
section 2: tenants -> alertflow).
"""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from . import keys
from .models import ApiKey, Tenant

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


def authenticate_key(secret: str) -> tuple[Principal, ApiKey] | None:
    """DRF's `(user, auth)` for an API key secret, or None when no usable key of an active
    tenant has it (unknown, expired, revoked, or the tenant is deactivated)."""
    key = keys.find(secret)
    if key is None or not key.usable or not key.tenant.active:
        return None
    now = timezone.now()
    if key.last_used is None or now - key.last_used > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used=now)
        key.last_used = now  # the cached copy too, or every request would write
    return Principal(tenant=key.tenant, key=key, role=key.effective_role), key
