"""One Redis client per process for the counters and scripts that need atomic Redis commands
(API throttles, circuit breakers, rate limits). Django's cache API has no INCR-with-expiry or
Lua, and builds a new client per call.

`Backoff` is the one "Redis failed: skip it for a while" rule of the caches that only save
PostgreSQL queries (the versioned caches, the preferences cache, the suppressions fact).
`WriteRefused` is the other side: the one answer of a write that must reach Redis and cannot.
"""

import logging
import time
from typing import ClassVar

import redis
from django.conf import settings

from .errors import TryAgain

logger = logging.getLogger(__name__)

_client: redis.Redis | None = None
_client_url: str | None = None

# After a Redis error, read PostgreSQL for this long before trying Redis again: a send must not
# pay a connect timeout (1 s here, 2 s for settings.CACHES) on every lookup while Redis is down.
RETRY_SECONDS = 30
# The Retry-After of a refused write (`WriteRefused`): past a process's back-off above, so a
# client that waits it out meets Redis tried again.
WRITE_RETRY_SECONDS = 60


def client() -> redis.Redis:
    global _client, _client_url
    if _client is None or _client_url != settings.REDIS_URL:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        _client_url = settings.REDIS_URL
    return _client


class WriteRefused(TryAgain):
    """A write whose readers rely on Redis hearing of it, refused because Redis could not be
    reached: raised inside the writer's transaction, so nothing is written; the client tries
    again. A write committed unheard would leave other processes reading the old state from
    Redis or their own caches (a suppression hidden, an opt-out ignored) until an expiry. One
    subclass per kind of write, for its code."""

    def __init__(self, code: str, what: str):
        super().__init__(code, f"{what} cannot be written while Redis is unreachable; try again.", WRITE_RETRY_SECONDS)


class Backoff:
    """Whether a cache may use Redis now, in this process: not for `seconds` after a failure.

    For what only saves queries, so skipping Redis is always correct (the caller reads
    PostgreSQL instead); never for what must reach Redis (a write whose readers rely on it).
    One per module that needs it, created at import."""

    _every: ClassVar[list["Backoff"]] = []

    def __init__(self, what: str, seconds: float = RETRY_SECONDS, instead: str = "reading PostgreSQL"):
        self.what = what
        self.seconds = seconds
        self.instead = instead  # what the caller does meanwhile, for the log
        self.down_until = 0.0
        Backoff._every.append(self)

    def usable(self) -> bool:
        return time.monotonic() >= self.down_until

    def failed(self, action: str) -> None:
        """Call from the `except` of a failed Redis call (the traceback is logged)."""
        self.down_until = time.monotonic() + self.seconds
        logger.warning("%s: Redis unavailable (%s); %s", self.what, action, self.instead, exc_info=True)

    @classmethod
    def reset_all(cls) -> None:
        """Redis usable again everywhere in this process (tests: one test's outage must not leak)."""
        for backoff in cls._every:
            backoff.down_until = 0.0
