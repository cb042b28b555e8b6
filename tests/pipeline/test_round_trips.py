"""What a single send costs the worker in Redis round trips, and the breaker resets it skips.

A transactional send is one message a batch, so each round trip a batch makes is one a message
makes (bench.deliverloop --size 1). These count the commands real Redis receives.
"""

import pytest
import redis.connection

from delivery import guards, pipeline
from delivery.sending import ProviderPool

from .conftest import accept, add_provider, smtp_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_commands(monkeypatch):
    """The name of each command (or the commands of each pipeline) sent to Redis from now on."""
    sent = []
    original = redis.connection.AbstractConnection.send_packed_command

    def recording(conn, command, check_health=True):
        packed = b"".join(command) if isinstance(command, list) else command
        # A packed command starts "*<n>\r\n$<len>\r\n<NAME>\r\n".
        sent.append(packed.split(b"\r\n")[2].decode().upper())
        return original(conn, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", recording)
    return sent


def test_a_warm_single_send_asks_redis_for_its_facts_in_one_mget_and_resets_no_clean_breaker(
    admin, tenant, ada, smtp_server, redis_commands
):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    warm, measured = accept(admin, ["email"])[0], accept(admin, ["email"])[0]
    pipeline.deliver([warm.id])  # starts the versions, fills the process's caches
    redis_commands.clear()

    assert pipeline.deliver([measured.id]) == 1

    # The suppressions fact and the providers' and webhook subscriptions' versions together, then
    # the breaker: no GET of each, no DEL of a breaker that had nothing to reset.
    assert redis_commands == ["MGET", "HMGET"]


def test_a_success_resets_the_failures_a_breaker_counted_before_the_batch(admin, tenant, ada, smtp_server, settings):
    settings.ALERTFLOW_BREAKER_FAILURES = 3
    provider = add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    guards.record_failure(str(provider.id))
    [message] = accept(admin, ["email"])

    assert pipeline.deliver([message.id]) == 1

    assert guards.client().exists(f"af:breaker:{provider.id}") == 0


def test_a_failure_counted_by_another_worker_during_a_batch_outlives_the_batchs_success(settings, tenant, smtp_server):
    settings.ALERTFLOW_BREAKER_FAILURES = 3
    provider = add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [spec] = ProviderPool().providers_for(tenant.pk, "email")
    pool = ProviderPool()
    assert pool.breaker_allows(spec)  # a clean breaker: closed, nothing counted
    guards.record_failure(spec.id)  # another worker's send to the provider fails meanwhile

    pool.record_success(spec)
    pool.close()

    assert guards.client().hget(f"af:breaker:{provider.id}", "failures") == b"1"


def test_a_failure_in_the_batch_then_a_success_resets_the_breaker(settings, tenant, smtp_server):
    settings.ALERTFLOW_BREAKER_FAILURES = 3
    provider = add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [spec] = ProviderPool().providers_for(tenant.pk, "email")
    pool = ProviderPool()
    assert pool.breaker_allows(spec)
    pool.record_failure(spec)
    assert pool.breaker_allows(spec)  # asked again after the failure: still under the threshold

    pool.record_success(spec)
    pool.close()

    assert guards.client().exists(f"af:breaker:{provider.id}") == 0
