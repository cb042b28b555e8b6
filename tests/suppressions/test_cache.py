"""The per-tenant "no suppressions" fact in Redis: a tenant that never suppressed anything is
checked without a query, and a suppression is seen by every reader once it commits."""

import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from alertflow import redis as shared_redis
from alertflow import versioned_cache
from delivery import pipeline
from notifications.models import Message
from preferences import suppressions
from preferences.models import Suppression

from .conftest import accept, add_provider, smtp_config
from .test_sending import reload, suppression_queries

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def fact(tenant) -> bytes | None:
    return shared_redis.client().get(suppressions._key(tenant.pk))


def test_a_tenant_without_suppressions_is_checked_once_then_from_redis(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    first, second = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    assert fact(tenant) == suppressions.NONE  # the accept's check found none and said so

    with CaptureQueriesContext(connection) as queries:
        assert pipeline.deliver([first.id]) == 1
        assert pipeline.deliver([second.id]) == 1

    assert suppression_queries(queries) == 0
    assert len(smtp_server.messages) == 2


def test_a_suppression_committed_after_none_was_cached_is_not_sent_to(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"])
    assert fact(tenant) == suppressions.NONE

    response = admin.post("/api/v1/suppressions", {"channel": "email", "address": "ada@example.com"}, format="json")
    assert response.status_code == 201, response.content

    assert pipeline.deliver([message.id]) == 0
    assert smtp_server.messages == []
    assert (reload(message).status, reload(message).reason) == ("suppressed", "suppressed:manual")


def test_a_send_reads_the_fact_with_its_cache_versions_in_one_round_trip(admin, tenant, ada, monkeypatch):
    # The first send finds no suppression and says so in Redis; the second starts the tenant's
    # keys version (tests/alertflow/test_versioned_cache.py).
    accept(admin, ["email"])
    accept(admin, ["email"])
    assert fact(tenant) == suppressions.NONE
    client = type(shared_redis.client())
    commands = []
    for name in ("get", "mget"):
        real = getattr(client, name)
        monkeypatch.setattr(
            client,
            name,
            lambda self, *keys, _real=real, _name=name: commands.append((_name, keys)) or _real(self, *keys),
        )

    [message] = accept(admin, ["email"])

    assert message.status == "queued"
    assert [name for name, _ in commands] == ["mget"]  # no GET of the fact of its own
    assert suppressions._key(tenant.pk) in commands[0][1][0]


def test_a_suppression_marked_during_the_request_is_read_anew(tenant):
    versioned_cache._begin_request()
    try:
        assert not suppressions.tenant_may_have_suppressions(tenant.pk)  # read with the versions
        with transaction.atomic():
            suppressions.suppress(tenant.pk, "email", ["ada@example.com"], "manual")

        assert suppressions.tenant_may_have_suppressions(tenant.pk)
    finally:
        versioned_cache._end_request()


def test_a_suppression_written_past_suppress_is_seen_too(admin, tenant, ada):
    accept(admin, ["email"])
    assert fact(tenant) == suppressions.NONE

    Suppression.objects.create(tenant=tenant, channel="email", address="ada@example.com", reason="hard_bounce")

    [email] = accept(admin, ["email", "sms"])[:1]
    assert (email.status, email.reason) == ("suppressed", "suppressed:hard_bounce")


def test_one_tenants_suppressions_say_nothing_of_another(admin, tenant, ada, outsider_tenant):
    suppressions.suppress(outsider_tenant.pk, "email", ["ada@example.com"], "hard_bounce")

    [email] = accept(admin, ["email"])

    assert email.status == "queued"
    assert (fact(tenant), fact(outsider_tenant)) == (suppressions.NONE, suppressions.SOME)
    assert suppressions.blocked(outsider_tenant.pk, [("email", "ada@example.com")], []) == {
        ("email", "ada@example.com"): {None: "hard_bounce"}
    }


def test_with_redis_down_every_check_reads_postgresql(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"])
    assert fact(tenant) == suppressions.NONE
    # A row no mark announced (bulk_create sends no signal): the "none" in Redis is stale now.
    Suppression.objects.bulk_create(
        [Suppression(tenant=tenant, channel="email", address="ada@example.com", reason="complaint")]
    )
    # Redis out of reach (nothing listens on port 1): the check cannot trust any "none", it must query.
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"), CaptureQueriesContext(connection) as queries:
        assert pipeline.deliver([message.id]) == 0
    assert suppression_queries(queries) == 1
    assert smtp_server.messages == []
    assert reload(message).status == "suppressed"


def test_a_suppression_redis_cannot_mark_is_refused_so_a_none_left_in_redis_hides_nothing(
    admin, tenant, ada, smtp_server
):
    """Redis fails during the write and answers again still holding "none": had the suppression
    been committed without its mark, the next send would have skipped it for up to 60 s."""
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"])
    assert fact(tenant) == suppressions.NONE
    body = {"channel": "email", "address": "ada@example.com"}

    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # nothing listens on port 1
        refused = admin.post("/api/v1/suppressions", body, format="json")

    assert refused.status_code == 503, refused.content
    assert refused.json()["error"]["code"] == "suppressions_unavailable"
    assert not Suppression.objects.filter(tenant=tenant).exists()
    assert fact(tenant) == suppressions.NONE  # Redis is back and still says "none"
    assert admin.post("/api/v1/suppressions", body, format="json").status_code == 201  # the client's retry
    assert pipeline.deliver([message.id]) == 0
    assert smtp_server.messages == []
    assert (reload(message).status, reload(message).reason) == ("suppressed", "suppressed:manual")


class ReaderPausedAfterGet:
    """The shared Redis client, but a GET waits (after it has read) until the writer has marked
    the tenant: the reader then queries before the writer's commit."""

    def __init__(self, real, writer_marked: threading.Event):
        self.real, self.writer_marked = real, writer_marked

    def get(self, key):
        value = self.real.get(key)
        assert self.writer_marked.wait(10)
        return value

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.django_db(transaction=True)
def test_a_reader_that_queried_before_the_commit_cannot_leave_none_behind(tenant, monkeypatch):
    """The race the SET NX closes: a reader finds no mark, then no row (the writer has marked the
    tenant but not committed yet) and would remember "none": the writer's mark must stand, or a
    reader right after the commit would skip the new suppression."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's write lock makes the reader wait for the commit: no race to close")
    real = shared_redis.client()
    real.delete(suppressions._key(tenant.pk))
    writer_marked = threading.Event()
    paused = ReaderPausedAfterGet(real, writer_marked)
    monkeypatch.setattr(suppressions.shared_redis, "client", lambda: paused)
    seen_by_reader = []

    def reader():
        try:
            seen_by_reader.append(suppressions.tenant_may_have_suppressions(tenant.pk))
        finally:
            connection.close()

    thread = threading.Thread(target=reader)
    thread.start()
    with transaction.atomic():
        suppressions.suppress(tenant.pk, "email", ["ada@example.com"], "complaint")
        writer_marked.set()
        thread.join()
        assert seen_by_reader == [False]  # its GET found no mark and its query no row
        assert fact(tenant) == suppressions.SOME  # before the commit: the reader's "none" lost

    assert fact(tenant) == suppressions.SOME
    writer_marked.set()
    assert suppressions.tenant_may_have_suppressions(tenant.pk)
    assert Message.objects.count() == 0
