"""Per-process caches of a tenant's rows, made exact by a per-tenant version number in Redis.

The accept path reads the same few rows on every send (the recipient named by id, the category,
the template version), each an ORM query that costs far more CPU than the row is worth. A
`VersionedCache` keeps what a process has read, and checks it on every use against the tenant's
version (one Redis GET, no PostgreSQL). Every write to such a row calls `changed(tenant_id)`,
which bumps the version at once and again after the commit, so the next lookup in every process
reads PostgreSQL again: an edited email address, a deleted recipient or a new template version
is what the next send sees. Rows are stored with the version read *before* them, so a change
committed meanwhile has moved the version past it and is reloaded at the next use.

Without Redis there is no caching: every lookup reads PostgreSQL, as it did before, and after a
Redis error the process does not try Redis again for `alertflow.redis.RETRY_SECONDS` (a lookup
must not pay a connect timeout each time). A bump is always tried: a Redis back early must hear it.
The API key lookup (tenants/keys.py) uses the same versions, with its own entries and first-sight
rule (a key is found by its secret: its tenant is unknown until the row is read).
"""

import secrets
import time
from collections.abc import Callable, Hashable
from typing import Any

from django.db import transaction

from .redis import Backoff, client

# Lookups that found nothing are not cached, so there is no "absent" entry to go stale.
_MISSING = object()
# One for every versioned cache of the process: they all use the same Redis.
_backoff = Backoff("Versioned caches")


def _start(key: str, redis=None) -> None:
    """Give a version Redis does not have a random start, not 0: after Redis lost it (a restart,
    a flush) counting again from 0 could reach the very number a process cached a row under."""
    (redis or client()).set(key, secrets.randbelow(2**53), nx=True)


class VersionedCache:
    def __init__(self, name: str, seconds: float = 60, max_entries: int = 10_000):
        self.name = name
        # A backstop only: the version check is what makes changes take effect at once.
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[tuple, tuple[float, bytes, Any]] = {}

    def _version_key(self, tenant_id) -> str:
        return f"af:{self.name}:version:{tenant_id}"

    def version(self, tenant_id) -> bytes | None:
        """The tenant's current version, or None when Redis cannot be reached (then: no caching)."""
        if not _backoff.usable():
            return None
        key = self._version_key(tenant_id)
        try:
            version = client().get(key)
            if version is None:
                _start(key)
                version = client().get(key)
            return version
        except Exception:  # any redis-py connection or timeout error: no caching
            _backoff.failed("get version")
            return None

    def get(self, tenant_id, key: Hashable, load: Callable[[], Any]) -> Any:
        """The tenant's row for `key`: from this process's cache while the tenant's version is
        unchanged, else `load()` (None when there is no such row, which is not cached).

        The row is shared by the threads of the process: callers must not change it."""
        entry_key = (str(tenant_id), key)
        current = self.version(tenant_id)
        cached = self._entries.get(entry_key, _MISSING)
        if cached is not _MISSING and current is not None:
            expires, version, row = cached
            if version == current and time.monotonic() < expires:
                return row
        row = load()
        if row is None or current is None:
            self._entries.pop(entry_key, None)
            return row
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[entry_key] = (time.monotonic() + self.seconds, current, row)
        return row

    def changed(self, tenant_id) -> None:
        """A row of the tenant changed or went: every process reloads the tenant's rows.

        Bumped now, so no process keeps serving the old row while the transaction runs, and
        again after the commit, so a row a process read in between (the old one, with the first
        bump's version) is reloaded too."""

        key = self._version_key(tenant_id)

        def bump():
            try:
                # A lost version starts at random here too: a bare INCR counts from 0 again.
                pipe = client().pipeline(transaction=False)
                _start(key, pipe)
                pipe.incr(key)
                pipe.execute()
            except Exception:
                _backoff.failed("bump")

        bump()
        transaction.on_commit(bump)

    def clear(self) -> None:
        self._entries.clear()
