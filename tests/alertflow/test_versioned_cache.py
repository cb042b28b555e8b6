"""alertflow/versioned_cache.py while Redis is down: rows come from PostgreSQL, and a process
does not pay Redis's timeout on every lookup (alertflow.redis.Backoff)."""

import socket
import time

import pytest
from django.test.utils import override_settings

from alertflow import versioned_cache
from alertflow.redis import client
from alertflow.versioned_cache import VersionedCache
from preferences.models import Recipient
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def silent_redis():
    """A TCP port that accepts connections and never answers: every Redis command waits for
    the client's socket timeout (1 s, alertflow.redis.client), as with a hung or unreachable Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def test_while_redis_is_down_lookups_read_postgresql_and_pay_one_timeout(tenant, silent_redis):
    cache = VersionedCache("test-recipients")
    ada = RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com")
    loads = []

    def load():
        loads.append(1)
        return Recipient.objects.get(pk=ada.pk)

    assert cache.get(tenant.pk, "ada", load).email == "ada@example.com"  # cached, Redis up
    with override_settings(REDIS_URL=silent_redis):
        started = time.monotonic()
        rows = [cache.get(tenant.pk, "ada", load) for _ in range(4)]
        seconds = time.monotonic() - started
        Recipient.objects.filter(pk=ada.pk).update(email="ada@new.example.com")  # no bump reaches Redis
        changed = cache.get(tenant.pk, "ada", load)

    assert [row.email for row in rows] == ["ada@example.com"] * 4
    assert changed.email == "ada@new.example.com"  # nothing served from the process's entries
    assert len(loads) == 1 + 5
    # The first lookup waits for the timeout; the others skip Redis (before: each waited).
    assert seconds < 2 * 1.0, seconds


def test_redis_is_used_again_once_the_back_off_is_over(tenant, monkeypatch):
    cache = VersionedCache("test-recipients")
    ada = RecipientFactory(tenant=tenant, external_id="ada")
    loads = []

    def load():
        loads.append(1)
        return Recipient.objects.get(pk=ada.pk)

    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # nothing listens on port 1
        cache.get(tenant.pk, "ada", load)
    assert not versioned_cache._backoff.usable()
    cache.get(tenant.pk, "ada", load)  # Redis answers again, but this process waits out its back-off
    assert len(loads) == 2

    monkeypatch.setattr(versioned_cache._backoff, "down_until", time.monotonic())  # its seconds have passed
    cache.get(tenant.pk, "ada", load)
    cache.get(tenant.pk, "ada", load)
    assert len(loads) == 3  # cached again


def test_a_version_redis_lost_never_comes_back_to_the_number_a_process_cached_under(tenant):
    cache = VersionedCache("test-recipients")
    cache.changed(tenant.pk)  # the tenant's first write since Redis started: it has no version yet
    assert cache.get(tenant.pk, "ada", lambda: "the old row") == "the old row"  # cached

    client().flushdb()  # Redis restarted without its data: every version is gone
    cache.changed(tenant.pk)  # the row changes, and its version is bumped from nothing again

    # Counted again from 0, the version came back to the one the old row was cached under.
    assert cache.get(tenant.pk, "ada", lambda: "the new row") == "the new row"
