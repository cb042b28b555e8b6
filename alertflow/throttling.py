"""Coarse API rate limits: per tenant for keyed requests, per client address for the rest.

A fixed window counted with one INCR per request (atomic, constant cost); the window's first
request also gives its key a lifetime (EXPIRE). redis-py's pipeline that sent both on every
request cost 2.4% of a send's instructions (bench/README, 2026-12-04 session 8).
(DRF's throttles keep every request time of the window in the cache and rewrite the list on
each request: 6,000 entries at 6,000/min, and not atomic.) They fail open: when Redis is down
the API keeps accepting, because PostgreSQL is the truth.
"""

import logging
import math
import time

from rest_framework import throttling
from rest_framework.settings import api_settings

from .redis import client

logger = logging.getLogger(__name__)


class FixedWindowThrottle(throttling.BaseThrottle):
    """`scope` names a rate in DEFAULT_THROTTLE_RATES ("100/min"); `ident` says whose count."""

    scope: str | None = None

    def scope_for(self, view) -> str | None:
        return self.scope

    def ident(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        scope, ident = self.scope_for(view), self.ident(request)
        if not scope or ident is None:
            return True
        limit, period = parse_rate(api_settings.DEFAULT_THROTTLE_RATES[scope])
        now = time.time()
        window = int(now // period)
        key = f"af:throttle:{scope}:{ident}:{window}"
        try:
            count = client().incr(key)
            if count == 1:
                # The window's first request gives its key a lifetime; a key that kept none
                # (the EXPIRE lost) names a window that never comes back.
                client().expire(key, period + 1)
        except Exception:  # any Redis connection error
            logger.warning("Rate limit store unavailable; allowing the request")
            return True
        self.retry_after = math.ceil((window + 1) * period - now)
        return count <= limit

    def wait(self):
        return getattr(self, "retry_after", None)


def parse_rate(rate: str) -> tuple[int, int]:
    """ "100/min" -> (100, 60). Periods: s, sec, m, min, h, hour, d, day."""
    count, period = rate.split("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]
    return int(count), seconds


class TenantRateThrottle(FixedWindowThrottle):
    scope = "tenant"

    def ident(self, request):
        principal = request.user
        if principal is None or not getattr(principal, "is_authenticated", False):
            return None
        return str(principal.tenant.pk)


class AddressRateThrottle(FixedWindowThrottle):
    """For the unauthenticated endpoints; the view sets `throttle_scope`."""

    def scope_for(self, view):
        return getattr(view, "throttle_scope", None)

    def ident(self, request):
        return self.get_ident(request)
