"""Categories named in sends come from a per-process cache checked against a per-tenant version
in Redis (alertflow/versioned_cache.py): no query once cached, every change seen at once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alertflow.versioned_cache import VersionedCache
from notifications.models import Message, Notification
from tenants.models import Category
from tenants.services import find_category
from tests.factories import CategoryFactory, RecipientFactory
from tests.notifications.conftest import EMAIL, SMS

pytestmark = pytest.mark.django_db


@pytest.fixture
def alerts(tenant):
    RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com", phone="+14155552671")
    return CategoryFactory(tenant=tenant, key="alerts", channels=["email"], priority="low")


def send(client):
    return client.post(
        "/api/v1/notifications",
        {"recipient": "ada", "category": "alerts", "content": {**EMAIL, **SMS}},
        format="json",
    )


def category_reads(queries) -> list[str]:
    table = Category._meta.db_table
    return [q["sql"] for q in queries if q["sql"].startswith("SELECT") and f'WHERE ("{table}"."key" = ' in q["sql"]]


def test_a_cached_category_costs_no_query(admin, alerts):
    with CaptureQueriesContext(connection) as first:
        assert send(admin).status_code == 202
    with CaptureQueriesContext(connection) as second:
        assert send(admin).status_code == 202

    assert len(category_reads(first.captured_queries)) == 1
    assert category_reads(second.captured_queries) == []


def test_a_changed_category_is_what_the_next_send_uses(admin, alerts):
    assert send(admin).status_code == 202

    changed = admin.patch("/api/v1/categories/alerts", {"channels": ["sms"], "priority": "high"}, format="json")
    assert changed.status_code == 200, changed.content

    response = send(admin)
    assert response.status_code == 202
    notification = Notification.objects.get(pk=response.json()["id"])
    assert (notification.channels, notification.priority) == (["sms"], "high")
    assert list(Message.objects.filter(notification=notification).values_list("channel", flat=True)) == ["sms"]


def test_another_process_reloads_after_a_change_made_in_this_one(admin, tenant, alerts):
    other = VersionedCache("categories")  # another process's entries, the same versions in Redis
    loads = []

    def load():
        loads.append(1)
        return Category.objects.filter(tenant=tenant, key="alerts").first()

    assert other.get(tenant.pk, "alerts", load).priority == "low"
    assert other.get(tenant.pk, "alerts", load).priority == "low"
    assert admin.patch("/api/v1/categories/alerts", {"priority": "high"}, format="json").status_code == 200

    assert other.get(tenant.pk, "alerts", load).priority == "high"
    assert len(loads) == 2


def test_a_deleted_category_is_refused_by_the_next_send(admin, alerts):
    assert send(admin).status_code == 202

    assert admin.delete("/api/v1/categories/alerts").status_code == 204

    refused = send(admin)
    assert refused.status_code == 400
    assert "category" in refused.json()["error"]["details"]["fields"]


def test_a_cached_category_is_not_found_by_another_tenant(admin, tenant, outsider_tenant, alerts):
    assert send(admin).status_code == 202

    assert find_category(outsider_tenant, "alerts") is None
    theirs = CategoryFactory(tenant=outsider_tenant, key="alerts", channels=["sms"])
    assert find_category(outsider_tenant, "alerts").pk == theirs.pk
    assert find_category(tenant, "alerts").pk == alerts.pk
