import pytest

from tests.factories import CategoryFactory, RecipientFactory

EMAIL = {"email": {"subject": "Hi {{ recipient.name }}", "text": "Code {{ code }}"}}
SMS = {"sms": {"text": "Code {{ code }}"}}


@pytest.fixture
def ada(tenant):
    return RecipientFactory(tenant=tenant, external_id="ada", name="Ada", email="ada@example.com", phone="+14155552671")


@pytest.fixture
def promo(tenant):
    return CategoryFactory(tenant=tenant, key="promo", channels=["email"], priority="low")


@pytest.fixture
def otp(tenant):
    return CategoryFactory(tenant=tenant, key="otp", channels=["sms"], priority="critical", critical=True)


def send(client, **body):
    body.setdefault("content", {**EMAIL, **SMS})
    body = {k: v for k, v in body.items() if v is not None}
    return client.post("/api/v1/notifications", body, format="json")
