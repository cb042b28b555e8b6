"""One Redis client per process for the counters and scripts that need atomic Redis commands
(API throttles, circuit breakers, rate limits). Django's cache API has no INCR-with-expiry or
Lua, and builds a new client per call."""

import redis
from django.conf import settings

_client: redis.Redis | None = None
_client_url: str | None = None


def client() -> redis.Redis:
    global _client, _client_url
    if _client is None or _client_url != settings.REDIS_URL:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        _client_url = settings.REDIS_URL
    return _client
