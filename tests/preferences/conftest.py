import pytest

from tests.factories import CategoryFactory, RecipientFactory


@pytest.fixture
def recipient(tenant):
    return RecipientFactory(tenant=tenant, external_id="u1", email="u1@example.com")


@pytest.fixture
def promo(tenant):
    return CategoryFactory(tenant=tenant, key="promo")


@pytest.fixture
def security(tenant):
    return CategoryFactory(tenant=tenant, key="security", critical=True)
