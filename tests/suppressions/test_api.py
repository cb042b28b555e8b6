"""GET/POST/DELETE /api/v1/suppressions and POST /api/v1/suppressions/import."""

from datetime import timedelta

import pytest
from django.utils import timezone

from preferences import suppressions
from preferences.models import Suppression
from tests.factories import CategoryFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/suppressions"


def test_an_address_is_suppressed_normalised_and_listed(admin, tenant):
    response = admin.post(URL, {"channel": "email", "address": " Ada@Example.COM "}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["channel"], body["address"], body["category"], body["reason"]) == (
        "email", "ada@example.com", None, "manual"
    )  # fmt: skip
    listed = admin.get(URL).json()
    assert listed["count"] == 1
    assert listed["results"][0]["id"] == body["id"]


def test_suppressing_an_address_twice_answers_the_existing_row(admin, tenant):
    first = admin.post(URL, {"channel": "sms", "address": "+1 415 555 2671"}, format="json")
    again = admin.post(URL, {"channel": "sms", "address": "+14155552671", "reason": "sms_stop"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["reason"] == "manual"  # the first word stays
    assert Suppression.objects.count() == 1


def test_a_category_suppression_and_a_global_one_are_two_rows(admin, tenant):
    CategoryFactory(tenant=tenant, key="promo")

    scoped = admin.post(URL, {"channel": "email", "address": "a@example.com", "category": "promo"}, format="json")
    whole = admin.post(URL, {"channel": "email", "address": "a@example.com"}, format="json")

    assert (scoped.status_code, whole.status_code) == (201, 201)
    assert scoped.json()["category"] == "promo"
    assert admin.get(URL, {"category": "promo"}).json()["count"] == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"channel": "email", "address": "not-an-email"}, "validation_error"),
        ({"channel": "sms", "address": "0800 123"}, "validation_error"),
        ({"channel": "inapp", "address": "x"}, "validation_error"),
        ({"channel": "email", "address": "a@example.com", "category": "nope"}, "unknown_category"),
        ({"channel": "email", "address": "a@example.com", "reason": "because"}, "validation_error"),
    ],
)
def test_a_bad_suppression_is_400_and_writes_nothing(admin, tenant, body, code):
    response = admin.post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert not Suppression.objects.exists()


def test_a_member_may_list_but_not_suppress(member, tenant):
    assert member.get(URL).status_code == 200
    assert member.post(URL, {"channel": "email", "address": "a@example.com"}, format="json").status_code == 403


def test_delete_lifts_a_suppression(admin, tenant):
    created = admin.post(URL, {"channel": "email", "address": "a@example.com"}, format="json").json()

    assert admin.get(f"{URL}/{created['id']}").status_code == 200
    assert admin.delete(f"{URL}/{created['id']}").status_code == 204
    assert not Suppression.objects.exists()


def test_another_tenants_suppressions_are_invisible(admin, outsider, outsider_tenant):
    theirs = suppressions.suppress(outsider_tenant.pk, "email", ["a@example.com"], "manual").created[0]

    assert admin.get(URL).json()["count"] == 0
    assert admin.get(f"{URL}/{theirs.pk}").status_code == 404
    assert admin.delete(f"{URL}/{theirs.pk}").status_code == 404
    assert Suppression.objects.filter(pk=theirs.pk).exists()
    assert outsider.get(URL).json()["count"] == 1


def test_the_list_filters(admin, tenant):
    promo = CategoryFactory(tenant=tenant, key="promo")
    suppressions.suppress(tenant.pk, "email", ["bounce@example.com"], "hard_bounce")
    suppressions.suppress(tenant.pk, "email", ["promo@example.com"], "manual", promo.pk)
    suppressions.suppress(tenant.pk, "sms", ["+14155552671"], "sms_stop")
    old = suppressions.suppress(tenant.pk, "push", ["old-token"], "dead_token").created[0]
    Suppression.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(days=3))

    def addresses(**params):
        response = admin.get(URL, params)
        assert response.status_code == 200, response.content
        return sorted(row["address"] for row in response.json()["results"])

    assert addresses(channel="email") == ["bounce@example.com", "promo@example.com"]
    assert addresses(reason="sms_stop") == ["+14155552671"]
    assert addresses(address="Bounce@Example.com") == ["bounce@example.com"]
    assert addresses(channel="sms", address="+1 (415) 555-2671") == ["+14155552671"]
    assert addresses(category="promo") == ["promo@example.com"]
    cutoff = (timezone.now() - timedelta(days=1)).isoformat()
    assert addresses(created_before=cutoff) == ["old-token"]
    assert len(addresses(created_after=cutoff)) == 3
    assert admin.get(URL, {"page_size": 2}).json()["next"]
    assert admin.get(URL, {"created_after": "yesterday"}).status_code == 400
    assert admin.get(URL, {"channel": "fax"}).status_code == 400


def test_an_import_suppresses_many_and_counts_what_was_there(admin, tenant):
    suppressions.suppress(tenant.pk, "email", ["known@example.com"], "hard_bounce")
    addresses = [f"user{n}@example.com" for n in range(2000)] + ["Known@example.com", "USER1@example.com"]

    response = admin.post(f"{URL}/import", {"channel": "email", "addresses": addresses}, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {"created": 2000, "existing": 2}
    assert Suppression.objects.filter(reason="import").count() == 2000
    assert Suppression.objects.get(address="known@example.com").reason == "hard_bounce"


def test_an_import_with_one_bad_address_writes_nothing_and_names_it(admin, tenant):
    addresses = ["a@example.com", "b@example.com", "not an address", "c@example.com"]

    response = admin.post(f"{URL}/import", {"channel": "email", "addresses": addresses}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]["index"]) == ("invalid_address", 2)
    assert "addresses[2]" in error["message"]
    assert not Suppression.objects.exists()


def test_an_import_into_a_category_of_another_tenant_is_refused(admin, outsider_tenant):
    CategoryFactory(tenant=outsider_tenant, key="theirs")

    response = admin.post(
        f"{URL}/import", {"channel": "email", "addresses": ["a@example.com"], "category": "theirs"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_category"
    assert not Suppression.objects.exists()


def test_an_import_over_the_limit_is_refused(admin, tenant):
    addresses = [f"u{n}@e.co" for n in range(10_001)]

    response = admin.post(f"{URL}/import", {"channel": "email", "addresses": addresses}, format="json")

    assert response.status_code == 400
    assert not Suppression.objects.exists()
