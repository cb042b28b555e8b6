"""Coarse API rate limits: per tenant for keyed requests, per client address for the rest.

DRF's throttles are not atomic (DESIGN 7): fine for these limits, never for provider send rates.
They fail open: when Redis is down the API keeps accepting, because PostgreSQL is the truth.
"""

import logging

from rest_framework import throttling

logger = logging.getLogger(__name__)


class FailOpenMixin:
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:  # the cache is Redis: any connection error lands here
            logger.warning("Rate limit store unavailable; allowing the request", exc_info=True)
            return True


class TenantRateThrottle(FailOpenMixin, throttling.SimpleRateThrottle):
    scope = "tenant"

    def get_cache_key(self, request, view):
        principal = request.user
        if principal is None or not getattr(principal, "is_authenticated", False):
            return None
        return self.cache_format % {"scope": self.scope, "ident": principal.tenant.pk}


class AddressRateThrottle(FailOpenMixin, throttling.SimpleRateThrottle):
    """For the unauthenticated endpoints; the view sets `throttle_scope`."""

    def __init__(self):
        pass  # the scope is known only once we see the view

    def allow_request(self, request, view):
        self.scope = getattr(view, "throttle_scope", None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
