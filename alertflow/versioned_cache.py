"""Per-process caches of a tenant's rows, made exact by a per-tenant version number in Redis.

The accept path reads the same few rows on every send (the recipient named by id, the category,
the template version), each an ORM query that costs far more CPU than the row is worth. A
`VersionedCache` keeps what a process has read, and checks it on every use against the tenant's
version (one Redis GET, no PostgreSQL). Every write to such a row calls `changed(tenant_id)`,
which bumps the version at once and again after the commit, so the next lookup in every process
reads PostgreSQL again: an edited email address, a deleted recipient or a new template version
is what the next send sees. Rows are stored with the version read *before* them, so a change
committed meanwhile has moved the version past it and is reloaded at the next use.

Within a web request, the first version asked for a tenant reads the versions of every versioned
cache of that tenant in one MGET, kept until the request ends: a send that authenticates its key
and looks up its category, template version and recipient pays one round trip for the four, not
four. The request then sees the versions as they were when it started using them, as one that
started a moment earlier would; its own writes (`changed`) drop what it kept. Other per-tenant
keys a send reads once (`read_with_versions`: whether the tenant has any suppression) come in the
same MGET, for a round trip fewer per send. A worker's batch does the same inside `scope()` (its
suppressions fact, providers and webhook subscriptions: one MGET at its first use, not three GETs).

Without Redis there is no caching: every lookup reads PostgreSQL, as it did before, and after a
Redis error the process does not try Redis again for `alertflow.redis.RETRY_SECONDS` (a lookup
must not pay a connect timeout each time). A bump is always tried: a Redis back early must hear it.
The API key lookup (tenants/keys.py) uses the same versions, with its own entries and first-sight
rule (a key is found by its secret: its tenant is unknown until the row is read).
"""

import secrets
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.signals import request_finished, request_started
from django.db import transaction

from .redis import Backoff, client

# Lookups that found nothing are not cached, so there is no "absent" entry to go stale.
_MISSING = object()
# One for every versioned cache of the process: they all use the same Redis.
_backoff = Backoff("Versioned caches")
# The names of the process's versioned caches, whose versions a request reads together.
_names: set[str] = set()
# Other keys a request reads with them: {name: the key of a tenant's value}.
_facts: dict[str, Callable[[Any], str]] = {}
# The request's versions, {tenant id: {cache name: version}}; None outside a web request (tasks,
# commands: every lookup reads its version then).
_request = threading.local()


def _version_key(name: str, tenant_id) -> str:
    return f"af:{name}:version:{tenant_id}"


def _begin_request(**kwargs) -> None:
    _request.versions = {}


def _end_request(**kwargs) -> None:
    _request.versions = None


request_started.connect(_begin_request, dispatch_uid="alertflow.versioned_cache.begin_request")
request_finished.connect(_end_request, dispatch_uid="alertflow.versioned_cache.end_request")


@contextmanager
def scope() -> Iterator[None]:
    """Keep each tenant's versions from their first use to the end of the block, read in one
    MGET, as a web request keeps them: for work outside a request (a worker's batch). Inside a
    request or another scope it keeps using theirs."""
    if getattr(_request, "versions", None) is not None:
        yield
        return
    _begin_request()
    try:
        yield
    finally:
        _end_request()


def _request_versions(tenant_id) -> dict[str, bytes | None] | None:
    """The tenant's versions kept by the current request, read in one MGET the first time;
    None outside a request."""
    kept = getattr(_request, "versions", None)
    if kept is None:
        return None
    versions = kept.get(str(tenant_id))
    if versions is None:
        names = sorted(_names)
        facts = sorted(_facts)
        values = client().mget(
            [_version_key(name, tenant_id) for name in names] + [_facts[fact](tenant_id) for fact in facts]
        )
        # A fact under ("fact", name): no cache name can be a tuple.
        versions = kept[str(tenant_id)] = dict(zip([*names, *[("fact", fact) for fact in facts]], values, strict=True))
    return versions


def read_with_versions(name: str, key_of: Callable[[Any], str]) -> None:
    """Have every web request (and `scope()`) read the Redis key `key_of(tenant_id)` in the MGET
    of the tenant's versions, for `request_fact(name, tenant_id)`."""
    _facts[name] = key_of


def request_fact(name: str, tenant_id) -> tuple[bool, bytes | None]:
    """The value of the key `name` (see `read_with_versions`) as the current request read it with
    the tenant's versions: (True, value, None when Redis has no such key), or (False, None)
    outside a web request or a `scope()`, or when Redis cannot be asked (the caller asks Redis
    itself). A
    request that changes the value calls `forget_request_versions(tenant_id)` to read it anew."""
    if not _backoff.usable():
        return False, None
    try:
        kept = _request_versions(tenant_id)
    except Exception:  # any redis-py connection or timeout error
        _backoff.failed("get version")
        return False, None
    if kept is None:
        return False, None
    return True, kept.get(("fact", name))


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
        _names.add(name)

    def _version_key(self, tenant_id) -> str:
        return _version_key(self.name, tenant_id)

    def version(self, tenant_id) -> bytes | None:
        """The tenant's current version (in a web request: as the request first read it), or
        None when Redis cannot be reached (then: no caching)."""
        if not _backoff.usable():
            return None
        key = self._version_key(tenant_id)
        try:
            kept = _request_versions(tenant_id)
            version = kept.get(self.name) if kept is not None else client().get(key)
            if version is None:
                _start(key)
                version = client().get(key)
                if kept is not None:
                    kept[self.name] = version
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

    def changed(self, tenant_id) -> bool:
        """A row of the tenant changed or went: every process reloads the tenant's rows.

        Bumped now, so no process keeps serving the old row while the transaction runs, and
        again after the commit, so a row a process read in between (the old one, with the first
        bump's version) is reloaded too. Returns whether the first bump reached Redis: when it
        did not, the processes keep their rows until `seconds` after they read them, and a
        writer that cannot let them (an opt-out) refuses the write."""

        key = self._version_key(tenant_id)

        def bump() -> bool:
            forget_request_versions(tenant_id)
            try:
                # A lost version starts at random here too: a bare INCR counts from 0 again.
                pipe = client().pipeline(transaction=False)
                _start(key, pipe)
                pipe.incr(key)
                pipe.execute()
            except Exception:
                _backoff.failed("bump")
                return False
            return True

        bumped = bump()
        transaction.on_commit(bump)
        return bumped

    def clear(self) -> None:
        self._entries.clear()


def forget_request_versions(tenant_id) -> None:
    """The current request reads the tenant's versions again at their next use (after a change)."""
    kept = getattr(_request, "versions", None)
    if kept is not None:
        kept.pop(str(tenant_id), None)
