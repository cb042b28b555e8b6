import pytest

from preferences import services
from tests.factories import CategoryFactory, RecipientFactory


@pytest.fixture(autouse=True)
def cache_breaker_closed(monkeypatch):
    """A test that breaks the cache opens the process-wide breaker; never let it leak."""
    monkeypatch.setattr(services, "_cache_down_until", 0.0)


@pytest.fixture
def recipient(tenant):
    return RecipientFactory(tenant=tenant, external_id="u1", email="u1@example.com")


@pytest.fixture
def promo(tenant):
    return CategoryFactory(tenant=tenant, key="promo")


@pytest.fixture
def security(tenant):
    return CategoryFactory(tenant=tenant, key="security", critical=True)
