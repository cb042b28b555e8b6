import pytest

from tests.factories import CategoryFactory, RecipientFactory
from tests.fakes.fixtures import *  # noqa: F403
from tests.pipeline.conftest import add_provider, fresh_provider_cache, smtp_config  # noqa: F401

PUBLIC_URL = "https://alertflow.example.com"


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.ALERTFLOW_PUBLIC_URL = PUBLIC_URL


@pytest.fixture
def promo(tenant):
    return CategoryFactory(tenant=tenant, key="promo", name="Promotions", channels=["email", "sms"])


@pytest.fixture
def news(tenant):
    return CategoryFactory(tenant=tenant, key="news", name="Newsletter")


@pytest.fixture
def security(tenant):
    return CategoryFactory(tenant=tenant, key="security", name="Security alerts", priority="critical", critical=True)


@pytest.fixture
def ada(tenant):
    return RecipientFactory(tenant=tenant, external_id="ada", name="Ada", email="ada@example.com", phone="+14155552671")


@pytest.fixture
def smtp_provider(tenant, smtp_server):
    return add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
