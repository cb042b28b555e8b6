"""Finding a request's API key without a database query on every request.

Each process keeps the keys it has seen, checked on every use against a per-tenant version
number in Redis that every change or delete of a key, a membership or the tenant bumps (before
the write, refused when Redis cannot hear of it, and again after the commit). A revoked key, a
demoted member or a deactivated tenant therefore takes effect on the next request in every
process. Without Redis, every request reads PostgreSQL, as before.
"""

import time

from alertflow.redis import WriteRefused
from alertflow.versioned_cache import VersionedCache

from .models import ApiKey

CACHE_SECONDS = 60  # a backstop; the version check is what makes changes immediate
MAX_ENTRIES = 10_000
_entries: dict[str, tuple[float, bytes, ApiKey]] = {}
# Only its per-tenant version (and the bump) is used: the entries above are keyed by secret.
_versions = VersionedCache("keys")


def find(secret: str) -> ApiKey | None:
    """The key with this secret (usable or not: the caller checks), or None."""
    hashed = ApiKey.hash(secret)
    cached = _entries.get(hashed)
    current = None
    if cached is not None:
        expires, version, key = cached
        current = _versions.version(key.tenant_id)
        if current is not None and current == version and time.monotonic() < expires:
            return key
    key = ApiKey.objects.select_related("tenant", "membership").filter(hashed=hashed).first()
    if key is None:
        _entries.pop(hashed, None)
        return None
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    if current is not None and key.tenant_id == cached[2].tenant_id:
        # `current` was read before this row, so a change committed in between has moved the
        # version past it and the next request reloads: the row may be trusted until then.
        _entries[hashed] = (time.monotonic() + CACHE_SECONDS, current, key)
    else:
        # First sight: the tenant (and so its version) was unknown before the read. Remember
        # the key so the next request reads the version first, then caches.
        _entries[hashed] = (0.0, b"", key)
    return key


class KeysUnavailable(WriteRefused):
    """Redis could not hear that a key, a membership or a tenant is about to change or go: the
    write is refused, nothing is written. Committed unheard, a revoked key, a removed member or a
    deactivated tenant would still be let in by every process that had cached the key and still
    reads the old version from Redis, for up to CACHE_SECONDS."""

    def __init__(self):
        super().__init__("keys_unavailable", "API keys, members and tenants")


def changing(tenant_id) -> None:
    """A key, membership or the tenant is about to change or go (a row that cached keys stand
    on): every process reloads its keys (the version is bumped now and again after the commit),
    and must hear of it before the write, or the write is refused (`KeysUnavailable`).
    With Redis down everywhere nothing is cached, since `find` reads PostgreSQL when it cannot read
    the version; the refusal is for a writer cut off from a Redis the other processes still read."""
    if not _versions.changed(tenant_id):
        raise KeysUnavailable


def changed(tenant_id) -> None:
    """A change `changing` announced was committed outside a transaction: every process reloads
    its keys again (a failure is logged; the write stands)."""
    _versions.changed(tenant_id)


def clear() -> None:
    _entries.clear()
