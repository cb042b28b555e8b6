"""Recipients named by id in single sends come from a per-process cache checked against a
per-tenant version in Redis (alertflow/versioned_cache.py): no query once cached, and every
change is seen at once by every process."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alertflow.versioned_cache import VersionedCache
from notifications.models import Message
from preferences import services as preference_services
from preferences.models import Preference, Recipient
from preferences.services import cached_preferences_many, find_recipient, recipients_by_id
from tests.factories import RecipientFactory
from tests.notifications.conftest import EMAIL

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(tenant):
    return RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com")


def send(client, recipient="ada"):
    return client.post(
        "/api/v1/notifications", {"recipient": recipient, "channels": ["email"], "content": EMAIL}, format="json"
    )


def recipient_reads(queries) -> list[str]:
    """The lookups of a recipient by external id (the preferences' own reads go by primary key)."""
    table = Recipient._meta.db_table
    by_id = f'WHERE ("{table}"."external_id" = '
    return [q["sql"] for q in queries if q["sql"].startswith("SELECT") and by_id in q["sql"]]


def sent_to(response) -> str:
    return Message.objects.get(notification_id=response.json()["id"]).to


def test_a_cached_recipient_costs_no_query(admin, ada):
    with CaptureQueriesContext(connection) as first:
        assert send(admin).status_code == 202
    with CaptureQueriesContext(connection) as second:
        assert send(admin).status_code == 202

    assert len(recipient_reads(first.captured_queries)) == 1
    assert recipient_reads(second.captured_queries) == []


def test_a_changed_address_is_what_the_next_send_uses(admin, ada):
    assert sent_to(send(admin)) == "ada@example.com"

    response = admin.put("/api/v1/recipients/ada", {"email": "ada@new.example.com"}, format="json")
    assert response.status_code == 200, response.content

    assert sent_to(send(admin)) == "ada@new.example.com"


def test_another_process_reloads_after_a_change_made_in_this_one(admin, tenant, ada):
    # Another process's cache: its own entries, the same versions in Redis.
    other = VersionedCache("recipients")
    loads = []

    def load():
        loads.append(1)
        return Recipient.objects.filter(tenant=tenant, external_id="ada").first()

    assert other.get(tenant.pk, "ada", load).email == "ada@example.com"
    assert other.get(tenant.pk, "ada", load).email == "ada@example.com"
    assert len(loads) == 1  # the second came from its cache

    assert admin.put("/api/v1/recipients/ada", {"email": "ada@new.example.com"}, format="json").status_code == 200

    assert other.get(tenant.pk, "ada", load).email == "ada@new.example.com"
    assert len(loads) == 2


def test_a_cached_recipient_brings_its_preferences_without_a_round_trip(admin, ada, monkeypatch):
    assert send(admin).status_code == 202  # cached, with its preferences
    asked = []
    monkeypatch.setattr(preference_services.cache, "get_many", lambda keys: asked.append(keys) or {})

    with CaptureQueriesContext(connection) as queries:
        assert send(admin).status_code == 202

    assert asked == []
    assert not [q for q in queries.captured_queries if Preference._meta.db_table in q["sql"]]


def test_a_lookup_compiles_its_query_once_and_reads_what_the_orm_reads(tenant, ada, monkeypatch):
    from django.db.models.sql.compiler import SQLCompiler

    preference_services.set_preferences(
        ada, {"channels": {"sms": False}, "quiet_hours": {"start": "22:00", "end": "07:00"}}
    )
    RecipientFactory(tenant=tenant, external_id="bob", email="bob@example.com")  # no preferences row
    compilations = []
    as_sql = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **k: compilations.append(1) or as_sql(self, *a, **k))
    recipients_by_id.clear()
    assert find_recipient(tenant, "ada") is not None  # the process's first lookup: compiled here, or before
    recipients_by_id.clear()
    compilations.clear()

    ada_found, bob_found = find_recipient(tenant, "ada"), find_recipient(tenant, "bob")

    assert compilations == []
    assert (ada_found.pk, ada_found.email, ada_found.tenant_id) == (ada.pk, "ada@example.com", tenant.pk)
    assert bob_found.external_id == "bob" and find_recipient(tenant, "carol") is None
    entries = cached_preferences_many([ada_found, bob_found])
    recipients_by_id.clear()
    assert entries == {r.pk: preference_services.cached_preferences(r) for r in (ada_found, bob_found)}
    assert entries[ada_found.pk]["preferences"]["channels"]["sms"] is False
    assert entries[bob_found.pk]["preferences"] == preference_services.default_document()


def test_a_preference_change_is_what_the_next_send_uses(admin, ada):
    assert send(admin).status_code == 202  # cached, with its preferences

    response = admin.put("/api/v1/recipients/ada/preferences", {"channels": {"email": False}}, format="json")
    assert response.status_code == 200, response.content

    refused = send(admin)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "preference_rejected"


def test_an_unsubscribe_is_what_the_next_send_uses(admin, ada):
    assert send(admin).status_code == 202  # cached, with its preferences

    assert preference_services.opt_out(ada, None, "email", source="unsubscribe_link")

    assert send(admin).status_code == 403


def test_another_process_sees_a_preference_change_made_in_this_one(admin, tenant, ada):
    other = VersionedCache("recipients")  # another process's entries, the same versions in Redis

    def load():
        return Recipient.objects.filter(tenant=tenant, external_id="ada").select_related("preference").first()

    assert cached_preferences_many([other.get(tenant.pk, "ada", load)])[ada.pk]["preferences"]["channels"]["email"]

    preference_services.set_preferences(ada, {"channels": {"email": False}})

    entry = cached_preferences_many([other.get(tenant.pk, "ada", load)])[ada.pk]
    assert entry["preferences"]["channels"]["email"] is False


def test_an_erased_recipient_is_unknown_to_the_next_send(admin, ada):
    assert send(admin).status_code == 202

    assert admin.delete("/api/v1/recipients/ada").status_code == 204

    refused = send(admin)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unknown_recipient"


def test_a_cached_recipient_is_not_found_by_another_tenant(admin, outsider, tenant, outsider_tenant, ada):
    assert send(admin).status_code == 202  # cached for the tenant

    assert send(outsider).status_code == 400
    assert find_recipient(outsider_tenant, "ada") is None

    theirs = RecipientFactory(tenant=outsider_tenant, external_id="ada", email="theirs@example.com")
    assert sent_to(send(outsider)) == "theirs@example.com"
    assert find_recipient(tenant, "ada").pk == ada.pk != theirs.pk


def test_without_redis_every_lookup_reads_the_database(admin, ada, monkeypatch):
    import alertflow.versioned_cache

    def down():
        raise ConnectionError("redis is down")

    monkeypatch.setattr(alertflow.versioned_cache, "client", down)
    recipients_by_id.clear()

    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            assert send(admin).status_code == 202
        assert len(recipient_reads(queries.captured_queries)) == 1


def test_a_version_lost_with_redis_starts_again_from_a_number_not_cached_before(tenant, ada):
    from alertflow.redis import client

    versions = set()
    for _ in range(5):
        client().delete(f"af:recipients:version:{tenant.pk}")
        versions.add(recipients_by_id.version(tenant.pk))

    assert b"0" not in versions and len(versions) == 5
