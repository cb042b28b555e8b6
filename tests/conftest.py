import logging

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from alertflow import outbound
from alertflow.choices import Role
from alertflow.redis import Backoff

from .factories import TenantFactory, api_key
from .fakes.dns import FakeResolver


@pytest.fixture(autouse=True)
def clean_redis():
    """Each xdist worker has its own Redis database (config/test_settings.py): start empty."""
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def redis_not_backed_off():
    """A test that breaks Redis opens the process-wide back-offs (alertflow.redis.Backoff): the
    next test starts with Redis usable."""
    Backoff.reset_all()


@pytest.fixture(autouse=True)
def relay_polling_forgotten():
    """A relay that announced it polls (notifications.queue.RelayPolling) in one test must not
    keep a later test's commits from waking its relay: clean_redis empties the key's database,
    and this the process's last reading of it."""
    from notifications.queue import relay_polling

    relay_polling.forget()


@pytest.fixture(autouse=True)
def no_kept_connections():
    """Provider connections kept between batches (delivery.sending.kept) stay within a test."""
    from delivery.sending import kept

    yield
    kept.close_all()


@pytest.fixture(autouse=True)
def root_log_level_kept():
    """A Celery worker started in a test (celery.contrib.testing's start_worker) sets the root
    logger to ERROR for the rest of the process: a later test on the same xdist worker then saw no
    warning in caplog (tests/pipeline/test_lease.py failed depending on the order)."""
    level = logging.root.level
    yield
    logging.root.setLevel(level)


@pytest.fixture(autouse=True)
def resolver(monkeypatch) -> FakeResolver:
    """The outbound guard resolves names from a table, never from DNS (tests/fakes/dns.py)."""
    fake = FakeResolver()
    monkeypatch.setattr(outbound, "_resolve", fake.resolve)
    return fake


@pytest.fixture
def broker():
    """The test's Redis database as the broker's lists, empty before and after."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


def client_with_key(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def tenant(db):
    return TenantFactory(name="Acme")


@pytest.fixture
def owner(tenant):
    return client_with_key(api_key(tenant, Role.OWNER)[1])


@pytest.fixture
def admin(tenant):
    return client_with_key(api_key(tenant, Role.ADMIN)[1])


@pytest.fixture
def member(tenant):
    return client_with_key(api_key(tenant, Role.MEMBER)[1])


@pytest.fixture
def outsider_tenant(db):
    return TenantFactory(name="Outsider Inc")


@pytest.fixture
def outsider(outsider_tenant):
    """An owner of another tenant: must see none of `tenant`'s objects (404, never 403)."""
    return client_with_key(api_key(outsider_tenant, Role.OWNER)[1])


@pytest.fixture
def anonymous():
    return APIClient()


@pytest.fixture
def throttle_rates(settings):
    """Set API throttle rates for one test: `throttle_rates(tenant="2/min")`."""

    def apply(**rates):
        merged = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates}
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": merged}

    return apply
