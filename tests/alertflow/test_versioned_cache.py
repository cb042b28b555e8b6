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


class CountingRedis:
    """The versioned caches' Redis client, counting the commands that read versions."""

    def __init__(self, real):
        self.real, self.reads = real, []

    def get(self, key):
        self.reads.append(("get", key))
        return self.real.get(key)

    def mget(self, keys):
        self.reads.append(("mget", len(keys)))
        return self.real.mget(keys)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def counted(monkeypatch):
    from alertflow.redis import client

    counting = CountingRedis(client())
    monkeypatch.setattr(versioned_cache, "client", lambda: counting)
    return counting


def test_a_send_reads_its_key_category_template_and_recipient_versions_in_one_round_trip(admin, tenant, counted):
    from tests.factories import CategoryFactory, TemplateFactory

    CategoryFactory(tenant=tenant, key="alerts", channels=["email"])
    TemplateFactory(tenant=tenant, code="hello", channels={"email": {"subject": "Hi", "text": "Hello"}})
    RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com")
    body = {"recipient": "ada", "category": "alerts", "template": "hello"}
    # The first request finds the key (first sight), the second starts the tenant's keys version
    # in Redis (no write made it yet: creating a key bumps nothing), the third has every row and
    # every version there.
    for _ in range(3):
        counted.reads.clear()
        response = admin.post("/api/v1/notifications", body, format="json")
        assert response.status_code == 202, response.content

    # With the keys read along (the suppressions fact).
    assert counted.reads == [("mget", len(versioned_cache._names) + len(versioned_cache._facts))]


def test_a_request_keeps_no_version_past_its_end(tenant, counted):
    cache = VersionedCache("test-recipients")
    versioned_cache._begin_request()
    first = cache.version(tenant.pk)
    counted.real.incr(f"af:test-recipients:version:{tenant.pk}")  # another process's change
    assert cache.version(tenant.pk) == first  # as the request first read it
    versioned_cache._end_request()
    counted.reads.clear()

    assert cache.version(tenant.pk) == cache.version(tenant.pk) == str(int(first) + 1).encode()
    assert [kind for kind, _ in counted.reads] == ["get", "get"]  # outside a request: each use reads it


def test_a_change_made_in_the_request_is_seen_by_its_next_lookup(tenant, counted):
    cache = VersionedCache("test-recipients")
    ada = RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com")

    def load():
        return Recipient.objects.get(pk=ada.pk)

    versioned_cache._begin_request()
    try:
        assert cache.get(tenant.pk, "ada", load).email == "ada@example.com"
        Recipient.objects.filter(pk=ada.pk).update(email="ada@new.example.com")
        cache.changed(tenant.pk)

        assert cache.get(tenant.pk, "ada", load).email == "ada@new.example.com"
    finally:
        versioned_cache._end_request()
