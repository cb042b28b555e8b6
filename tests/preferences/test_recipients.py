import pytest
from django.core.cache import cache
from rest_framework.exceptions import ValidationError

from preferences.models import Device, Preference, Recipient, Subscription
from preferences.services import cache_key, decide, upsert_recipient
from tests.factories import DeviceFactory, RecipientFactory, TopicFactory


def test_put_creates_a_recipient_with_201_then_updates_with_200(admin, tenant):
    body = {"email": "Ada@Example.com", "phone": "+1 415 555 2671", "name": "Ada", "locale": "fr-ca"}
    created = admin.put("/api/v1/recipients/user-1", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json() | {"created": None, "updated": None} == {
        "external_id": "user-1",
        "email": "ada@example.com",
        "phone": "+14155552671",
        "name": "Ada",
        "locale": "fr-CA",
        "timezone": "UTC",
        "data": {},
        "created": None,
        "updated": None,
    }

    updated = admin.put("/api/v1/recipients/user-1", {"timezone": "Europe/Paris"}, format="json")
    assert updated.status_code == 200
    assert updated.json()["timezone"] == "Europe/Paris"
    assert updated.json()["email"] == "ada@example.com"  # fields not sent are kept
    assert Recipient.objects.filter(tenant=tenant).count() == 1


def test_put_null_clears_a_field(admin, recipient):
    response = admin.put("/api/v1/recipients/u1", {"email": None, "data": {"plan": "pro"}}, format="json")
    assert response.status_code == 200
    recipient.refresh_from_db()
    assert (recipient.email, recipient.data) == ("", {"plan": "pro"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("phone", "4155552671"),  # no country code: not E.164
        ("phone", "+1 555"),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "../etc/passwd"),
        ("timezone", "America"),  # a folder of the zone database
        ("timezone", "tzdata.zi"),  # a file of it that is no zone
        ("locale", "english"),
        ("locale", "fr_CA"),
        ("data", ["not", "an", "object"]),
    ],
)
def test_invalid_recipient_field_is_a_validation_error(admin, field, value):
    response = admin.put("/api/v1/recipients/user-1", {field: value}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"]
    assert not Recipient.objects.exists()


@pytest.mark.parametrize("locale", ["en", "fr-CA", "zh-Hant-TW", "es-419", "de-CH-1996"])
def test_bcp47_locales_are_accepted(admin, locale):
    response = admin.put("/api/v1/recipients/user-1", {"locale": locale}, format="json")
    assert response.status_code == 201
    assert response.json()["locale"] == locale


def test_external_id_longer_than_128_characters_is_refused(admin):
    response = admin.put(f"/api/v1/recipients/{'x' * 129}", {}, format="json")
    assert response.status_code == 400
    assert "external_id" in response.json()["error"]["details"]["fields"]


def test_upsert_recipient_service_validates_like_the_api(tenant):
    with pytest.raises(ValidationError):
        upsert_recipient(tenant, "user-1", {"phone": "12"})
    recipient, created = upsert_recipient(tenant, "user-1", {"id": "user-1", "email": "a@example.com"})
    assert created and recipient.email == "a@example.com"
    again, created = upsert_recipient(tenant, "user-1", {"email": "a@example.com"})
    assert (again.pk, created) == (recipient.pk, False)


def test_get_recipient(member, recipient):
    response = member.get("/api/v1/recipients/u1")
    assert response.status_code == 200
    assert response.json()["email"] == "u1@example.com"


def test_delete_erases_the_recipient_devices_preferences_and_subscriptions(admin, tenant, recipient):
    DeviceFactory(recipient=recipient)
    Preference.objects.create(recipient=recipient, channels={"email": False})  # as committed: no invalidation pending
    TopicFactory(tenant=tenant).subscriptions.create(recipient=recipient)
    decide(recipient, None, "email")  # caches the preferences
    key = cache_key(tenant.pk, recipient.pk)
    assert cache.get(key) is not None

    response = admin.delete("/api/v1/recipients/u1")

    assert response.status_code == 204
    assert cache.get(key) is None
    assert not Recipient.objects.exists()
    assert not Device.objects.exists()
    assert not Preference.objects.exists()
    assert not Subscription.objects.exists()


def test_list_is_paginated_and_filters_by_email_phone_and_topic(member, tenant):
    ada = RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com", phone="+14155552671")
    RecipientFactory(tenant=tenant, external_id="bob", email="bob@example.com")
    topic = TopicFactory(tenant=tenant, key="news")
    topic.subscriptions.create(recipient=ada)
    TopicFactory(key="news").subscriptions.create(recipient=RecipientFactory(email="ada@example.com"))  # other tenant

    everyone = member.get("/api/v1/recipients", {"page_size": 1}).json()
    assert everyone["count"] == 2 and len(everyone["results"]) == 1 and everyone["next"]

    def ids(**params):
        response = member.get("/api/v1/recipients", params)
        assert response.status_code == 200
        return [r["external_id"] for r in response.json()["results"]]

    assert ids(email="ADA@example.com") == ["ada"]
    assert ids(phone="+1 (415) 555-2671") == ["ada"]
    assert ids(topic="news") == ["ada"]
    assert ids(topic="nothing") == []


def test_list_filter_with_a_bad_phone_is_a_validation_error(member):
    response = member.get("/api/v1/recipients", {"phone": "nope"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_member_reads_but_cannot_write_recipients(member, recipient):
    assert member.get("/api/v1/recipients").status_code == 200
    for response in (
        member.put("/api/v1/recipients/u1", {"name": "x"}, format="json"),
        member.delete("/api/v1/recipients/u1"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    assert Recipient.objects.filter(external_id="u1", name="").exists()


def test_outsider_cannot_see_or_delete_a_recipient(outsider, recipient):
    assert outsider.get("/api/v1/recipients/u1").status_code == 404
    assert outsider.delete("/api/v1/recipients/u1").status_code == 404
    assert outsider.get("/api/v1/recipients").json()["count"] == 0
    assert Recipient.objects.filter(pk=recipient.pk).exists()


def test_outsider_put_creates_its_own_recipient_with_the_same_id(outsider, outsider_tenant, recipient):
    response = outsider.put("/api/v1/recipients/u1", {"email": "other@example.com"}, format="json")
    assert response.status_code == 201
    recipient.refresh_from_db()
    assert recipient.email == "u1@example.com"
    assert Recipient.objects.get(tenant=outsider_tenant).email == "other@example.com"
