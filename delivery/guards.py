"""Per-provider circuit breakers and send-rate limits, with their state in Redis.

Every worker on every host shares them, so a provider that is down is skipped by all workers at
once, and a tenant's Twilio account is never driven past its rate however many workers run.
Both are Lua scripts: one round trip, atomic, no read-then-write race (DESIGN section 7: DRF's
throttles are not atomic, which is fine for the API and not for this).

If Redis itself is unreachable the guards step aside (allow, no limit): delivery goes on, and
PostgreSQL still holds every message.
"""

import contextlib
import logging
import time

import redis
from django.conf import settings

from alertflow.redis import client

logger = logging.getLogger(__name__)

# --- Circuit breaker ----------------------------------------------------------------------------
# closed: sends go through; failures within the window are counted.
# open: `open_until` is in the future; the provider is skipped.
# half-open: `open_until` has passed; one worker wins the probe key and tries one send. Success
# closes the breaker, failure opens it for another cool-down.

BREAKER_SCRIPT = """
local key = KEYS[1]
local now, threshold, window, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local open_until = tonumber(redis.call('HGET', key, 'open_until') or '0')
if open_until > 0 then
  -- a failed probe (half-open) or a straggler while open: (re)open for a full cool-down
  redis.call('HSET', key, 'open_until', now + cooldown, 'failures', 0)
  redis.call('DEL', KEYS[2])
  redis.call('EXPIRE', key, cooldown * 10)
  return 1
end
local failures = redis.call('HINCRBY', key, 'failures', 1)
if failures == 1 then redis.call('EXPIRE', key, window) end
if failures >= threshold then
  redis.call('HSET', key, 'open_until', now + cooldown, 'failures', 0)
  redis.call('EXPIRE', key, cooldown * 10)
  return 1
end
return 0
"""


def _breaker_keys(provider_id: str) -> list[str]:
    return [f"af:breaker:{provider_id}", f"af:breaker:{provider_id}:probe"]


def breaker_allows(provider_id: str) -> bool:
    """May this provider be tried now? Closed: yes. Open: no. Half-open: one probe at a time."""
    return breaker_check(provider_id)[0]


def breaker_check(provider_id: str) -> tuple[bool, bool]:
    """`breaker_allows`, and whether the breaker had any state (failures counted, open or
    half-open): a success need only reset a breaker that had some (`ProviderPool.close`)."""
    key, probe = _breaker_keys(provider_id)
    try:
        open_until, failures = client().hmget(key, "open_until", "failures")
        open_until = float(open_until or 0)
        if open_until == 0:
            return True, failures is not None
        if time.time() < open_until:
            return False, True
        return bool(client().set(probe, 1, nx=True, ex=settings.ALERTFLOW_BREAKER_COOLDOWN_SECONDS)), True
    except redis.RedisError:
        logger.warning("Circuit breaker state unavailable; allowing %s", provider_id)
        # Unknown: reset it after a success, as before the state could be read.
        return True, True


def breaker_state(provider_id: str) -> str:
    key, _ = _breaker_keys(provider_id)
    open_until = float(client().hget(key, "open_until") or 0)
    if open_until == 0:
        return "closed"
    return "open" if time.time() < open_until else "half-open"


def record_success(provider_id: str) -> None:
    with contextlib.suppress(redis.RedisError):
        client().delete(*_breaker_keys(provider_id))


def record_failure(provider_id: str) -> bool:
    """Count a transient failure; return True when this failure opened the breaker."""
    try:
        opened = client().eval(
            BREAKER_SCRIPT,
            2,
            *_breaker_keys(provider_id),
            time.time(),
            settings.ALERTFLOW_BREAKER_FAILURES,
            settings.ALERTFLOW_BREAKER_WINDOW_SECONDS,
            settings.ALERTFLOW_BREAKER_COOLDOWN_SECONDS,
        )
    except redis.RedisError:
        return False
    if opened:
        logger.warning("Circuit breaker opened for provider %s", provider_id)
    return bool(opened)


# --- Send-rate limit: a token bucket --------------------------------------------------------------
# The bucket holds up to `rate` tokens (one second's worth) and refills continuously. A caller
# that finds no token may reserve one from the future (the count goes negative) when the wait is
# short; it then sleeps that long. Reservations keep concurrent workers in order without a lock.

BUCKET_SCRIPT = """
local key = KEYS[1]
local now, rate, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local capacity = math.max(rate, 1)
local state = redis.call('HMGET', key, 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - at) * rate)
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
  if wait > max_wait then
    redis.call('HSET', key, 'tokens', tokens, 'at', now)
    return tostring(-wait)
  end
end
redis.call('HSET', key, 'tokens', tokens - 1, 'at', now)
redis.call('EXPIRE', key, math.ceil(capacity / rate) + 60)
return tostring(wait)
"""


def acquire_send(provider_id: str, rate: float | None, max_wait: float | None = None) -> float | None:
    """Take a send slot for this provider, sleeping up to `max_wait` for one.

    Returns None when the send may go now (after any short wait), or the seconds until a slot
    frees when the wait would be longer: the caller tries another provider or retries later.
    """
    if not rate:
        return None
    max_wait = settings.ALERTFLOW_RATE_LIMIT_MAX_WAIT_SECONDS if max_wait is None else max_wait
    try:
        wait = float(client().eval(BUCKET_SCRIPT, 1, f"af:bucket:{provider_id}", time.time(), rate, max_wait))
    except redis.RedisError:
        logger.warning("Rate limit state unavailable; not limiting %s", provider_id)
        return None
    if wait < 0:
        return -wait
    if wait > 0:
        time.sleep(wait)
    return None
