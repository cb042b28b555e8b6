"""The operator's console checks a recipient as the API does (the API's own serializer, one
place for each rule), and a timezone stored before that check existed fails no send."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from preferences.models import Recipient
from tenants.models import Category
from tests.factories import CategoryFactory, RecipientFactory
from tests.notifications.conftest import EMAIL
from tests.operators.pages import errors_of, save

pytestmark = pytest.mark.django_db


@pytest.fixture
def namesake(outsider_tenant):
    """Another tenant's recipient with the same id: the console's checks leave it alone."""
    return RecipientFactory(
        tenant=outsider_tenant, external_id="ada", email="Ada@Outsider.example", timezone="Europe/Paris"
    )


def test_admin_refuses_a_timezone_the_api_refuses_with_the_apis_message(admin_client, admin, tenant, namesake):
    api = admin.put("/api/v1/recipients/ada", {"timezone": "America"}, format="json")
    add = reverse("admin:preferences_recipient_add")

    response = save(admin_client, add, tenant=tenant.pk, external_id="ada", timezone="America")

    assert api.status_code == 400
    assert response.status_code == 200  # the form again, with the error
    assert errors_of(response)["timezone"] == api.json()["error"]["details"]["fields"]["timezone"]
    assert not Recipient.objects.filter(tenant=tenant).exists()
    namesake.refresh_from_db()
    assert namesake.timezone == "Europe/Paris"


def test_admin_checks_and_normalises_contact_fields_as_the_api_does(admin_client, tenant, namesake):
    ada = RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com")
    change = reverse("admin:preferences_recipient_change", args=[ada.pk])

    refused = save(admin_client, change, phone="12345", locale="not a locale", data='{"a": "\\u0000"}')
    saved = save(admin_client, change, email="ADA@Example.COM", phone="+1 415 555 2671", locale="fr-ca")

    assert set(errors_of(refused)) == {"phone", "locale", "data"}
    assert saved.status_code == 302
    ada.refresh_from_db()
    assert (ada.email, ada.phone, ada.locale) == ("ada@example.com", "+14155552671", "fr-CA")
    namesake.refresh_from_db()
    assert (namesake.email, namesake.phone) == ("Ada@Outsider.example", "")


def test_admin_refuses_an_external_id_the_api_refuses(admin_client, tenant, namesake):
    response = save(admin_client, reverse("admin:preferences_recipient_add"), tenant=tenant.pk, external_id="a/b")

    assert response.status_code == 200
    assert "external_id" in errors_of(response)
    assert not Recipient.objects.filter(tenant=tenant).exists()


def test_admin_refuses_category_channels_the_api_refuses(admin_client, tenant, outsider_tenant):
    promo = CategoryFactory(tenant=tenant, key="promo", channels=["email"])
    namesake = CategoryFactory(tenant=outsider_tenant, key="promo", channels=["email"])
    change = reverse("admin:tenants_category_change", args=[promo.pk])

    response = save(admin_client, change, channels='["email", "fax"]')

    assert response.status_code == 200
    assert "channels" in errors_of(response)
    assert Category.objects.get(pk=promo.pk).channels == ["email"]
    assert save(admin_client, change, channels='["sms"]').status_code == 302
    assert Category.objects.get(pk=promo.pk).channels == ["sms"]
    assert Category.objects.get(pk=namesake.pk).channels == ["email"]


@pytest.mark.parametrize("stored", ["America", "Mars/Olympus", "../etc"])
def test_a_stored_timezone_that_is_not_one_is_read_as_utc_by_quiet_hours(admin, tenant, outsider, stored):
    RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com", timezone=stored)
    now = timezone.now()
    quiet = {"start": f"{now - timedelta(hours=1):%H:%M}", "end": f"{now + timedelta(hours=1):%H:%M}"}
    assert admin.put("/api/v1/recipients/ada/preferences", {"quiet_hours": quiet}, format="json").status_code == 200

    response = admin.post(
        "/api/v1/notifications", {"recipient": "ada", "channels": ["email"], "content": EMAIL}, format="json"
    )

    assert response.status_code == 202, response.content
    [message] = response.json()["messages"]
    assert (message["status"], message["reason"]) == ("scheduled", "quiet_hours")  # in UTC, where it is quiet now
    assert outsider.get("/api/v1/recipients/ada").status_code == 404
