"""The operator's console keeps a device with its recipient's tenant, and a subscription's
recipient and topic in one tenant, as the API does (it takes both from the caller's tenant)."""

import pytest
from django.urls import reverse

from preferences.models import Device, Subscription
from tests.factories import DeviceFactory, RecipientFactory, TopicFactory
from tests.operators.pages import errors_of, save

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(tenant):
    return RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com")


@pytest.fixture
def namesake(outsider_tenant):
    """Another tenant's recipient with the same id."""
    return RecipientFactory(tenant=outsider_tenant, external_id="ada", email="ada@outsider.example")


def test_admin_refuses_a_device_of_another_tenant_than_its_recipients(
    admin_client, tenant, outsider_tenant, ada, namesake
):
    device = DeviceFactory(recipient=ada)
    theirs = DeviceFactory(recipient=namesake)
    change = reverse("admin:preferences_device_change", args=[device.pk])

    moved_tenant = save(admin_client, change, tenant=outsider_tenant.pk)
    moved_recipient = save(admin_client, change, recipient=namesake.pk)
    deactivated = save(admin_client, change, active="", reason="lost phone")

    assert moved_tenant.status_code == moved_recipient.status_code == 200
    assert "recipient" in errors_of(moved_tenant)
    assert "recipient" in errors_of(moved_recipient)
    assert deactivated.status_code == 302
    device.refresh_from_db()
    assert (device.tenant, device.recipient, device.active) == (tenant, ada, False)
    theirs.refresh_from_db()
    assert (theirs.tenant, theirs.recipient, theirs.active) == (outsider_tenant, namesake, True)


def test_admin_adds_no_device(admin_client, ada):
    """A device is registered through the API, which holds its push token; the console never
    shows a token, so one added here had none (and the recipient page's inline no tenant)."""
    recipient_page = admin_client.get(reverse("admin:preferences_recipient_change", args=[ada.pk]))

    assert admin_client.get(reverse("admin:preferences_device_add")).status_code == 403
    [devices] = [f for f in recipient_page.context["inline_admin_formsets"] if f.opts.model is Device]
    assert not devices.has_add_permission


def test_admin_refuses_a_subscription_across_tenants(admin_client, tenant, outsider_tenant, ada, namesake):
    news = TopicFactory(tenant=tenant, key="news")
    their_news = TopicFactory(tenant=outsider_tenant, key="news")
    add = reverse("admin:preferences_subscription_add")

    recipient_of_another = save(admin_client, add, topic=news.pk, recipient=namesake.pk)
    topic_of_another = save(admin_client, add, topic=their_news.pk, recipient=ada.pk)
    added = save(admin_client, add, topic=news.pk, recipient=ada.pk)
    subscription = Subscription.objects.get(topic=news)
    moved = save(
        admin_client, reverse("admin:preferences_subscription_change", args=[subscription.pk]), topic=their_news.pk
    )

    assert recipient_of_another.status_code == topic_of_another.status_code == moved.status_code == 200
    assert "recipient" in errors_of(recipient_of_another)
    assert "recipient" in errors_of(topic_of_another)
    assert "recipient" in errors_of(moved)
    assert added.status_code == 302
    assert list(Subscription.objects.values_list("topic", "recipient")) == [(news.pk, ada.pk)]
    assert not their_news.subscriptions.exists()
