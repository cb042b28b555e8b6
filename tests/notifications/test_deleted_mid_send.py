"""A send whose recipient or category another request deletes while it is being accepted is
answered as if they had not existed (400 `unknown_recipient`, 400 naming `category`), never a
500, and writes nothing.

The foreign keys are checked when the send commits (Django makes them deferrable), so the
deletion has to land between the send's lookup and its commit. Each test deletes from a
connection of its own at a function boundary of the service: before its transaction (the
category was looked up by the serializer; the recipient was read from the process's cache,
whose version the request read when it authenticated), or inside it after its INSERTs
(PostgreSQL only: SQLite's IMMEDIATE transactions hold every other writer until the commit).
"""

import threading

import pytest
from django.db import connection
from django.db.models.signals import pre_delete
from rest_framework.test import APIClient

from notifications import services
from notifications.models import Message, Notification
from preferences.models import Recipient
from preferences.services import erase_recipient
from tenants.models import Category, Tenant
from tests.factories import CategoryFactory, RecipientFactory

from .conftest import send

pytestmark = pytest.mark.django_db(transaction=True)


def in_another_connection(work) -> None:
    """Run `work` in a thread, hence on a database connection of its own, and wait for it."""
    errors = []

    def run():
        try:
            work()
        except BaseException as exc:  # re-raised in the test's thread below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the deletion waited for the send"
    if errors:
        raise errors[0]


def delete_at(monkeypatch, name: str, work) -> None:
    """Run `work` in another connection when the service next calls its function `name`:
    `request_fingerprint` comes before the send's transaction, `send_cost` inside it, after
    its INSERTs and before its commit."""
    original = getattr(services, name)

    def hooked(*args, **kwargs):
        monkeypatch.setattr(services, name, original)
        in_another_connection(work)
        return original(*args, **kwargs)

    monkeypatch.setattr(services, name, hooked)


def erase(recipient):
    return lambda: erase_recipient(Recipient.objects.get(pk=recipient.pk))


def delete(category):
    return lambda: Category.objects.get(pk=category.pk).delete()


@pytest.fixture
def namesakes(outsider_tenant):
    """Another tenant's recipient and category with the same ids: they must not pass for the
    deleted ones, and stay."""
    RecipientFactory(tenant=outsider_tenant, external_id="ada", email="ada@outsider.example")
    CategoryFactory(tenant=outsider_tenant, key="promo", channels=["email"])


def assert_nothing_written(notifications: int = 0):
    assert Notification.objects.count() == notifications
    assert Message.objects.filter(notification__tenant__name="Acme").count() == notifications
    assert Recipient.objects.filter(tenant__name="Outsider Inc", external_id="ada").exists()
    assert Category.objects.filter(tenant__name="Outsider Inc", key="promo").exists()


def warm_recipient_cache(client) -> None:
    """A first send leaves ada in the process's recipient cache: the next request reads the
    versions when it authenticates, before a deletion moves them, and finds ada there."""
    assert send(client, recipient="ada", channels=["email"]).status_code == 202


@pytest.mark.sqlite
def test_recipient_erased_after_the_cached_lookup_is_400_unknown_recipient(admin, ada, namesakes, monkeypatch):
    warm_recipient_cache(admin)
    delete_at(monkeypatch, "request_fingerprint", erase(ada))

    response = send(admin, recipient="ada", channels=["email"])

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unknown_recipient"
    assert response.json()["error"]["details"] == {"recipient": "ada"}
    assert Notification.objects.count() == 1  # the first send's alone, its message erased with ada
    assert not Message.objects.filter(tenant=ada.tenant).exists()


def test_recipient_erased_before_the_sends_commit_is_400_unknown_recipient(admin, ada, namesakes, monkeypatch):
    delete_at(monkeypatch, "send_cost", erase(ada))

    response = send(admin, recipient="ada", channels=["email", "sms"])

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unknown_recipient"
    assert_nothing_written()


@pytest.mark.sqlite
def test_category_deleted_after_the_lookup_is_400_naming_the_category(admin, ada, promo, namesakes, monkeypatch):
    delete_at(monkeypatch, "request_fingerprint", delete(promo))

    response = send(admin, recipient="ada", category="promo")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == {"fields": {"category": ["No category 'promo'."]}}
    assert error == send(admin, recipient="ada", category="promo").json()["error"]  # as if it never was
    assert_nothing_written()


def test_category_deleted_before_the_sends_commit_is_400_naming_the_category(admin, ada, promo, namesakes, monkeypatch):
    delete_at(monkeypatch, "send_cost", delete(promo))

    response = send(admin, recipient="ada", category="promo")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {"fields": {"category": ["No category 'promo'."]}}
    assert_nothing_written()


@pytest.mark.sqlite
def test_bulk_send_whose_category_is_deleted_meanwhile_is_400(admin, ada, promo, namesakes, monkeypatch):
    delete_at(monkeypatch, "request_fingerprint", delete(promo))

    response = send(admin, recipients=["ada"], category="promo")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {"fields": {"category": ["No category 'promo'."]}}
    assert_nothing_written()


@pytest.mark.sqlite
def test_a_key_refused_for_an_erased_recipient_is_free_for_the_retry(admin, ada, namesakes, monkeypatch):
    warm_recipient_cache(admin)
    delete_at(monkeypatch, "request_fingerprint", erase(ada))

    refused = send(admin, recipient="ada", channels=["email"], idempotency_key="k1")
    admin.put("/api/v1/recipients/ada", {"email": "ada@example.com"}, format="json")
    retried = send(admin, recipient="ada", channels=["email"], idempotency_key="k1")

    assert refused.status_code == 400, refused.content
    assert refused.json()["error"]["code"] == "unknown_recipient"
    assert retried.status_code == 202, retried.content
    assert Notification.objects.filter(idempotency_key="k1").count() == 1


@pytest.mark.sqlite
def test_alertora_notify_whose_category_is_deleted_meanwhile_is_400(admin, ada, promo, namesakes, monkeypatch):
    delete_at(monkeypatch, "request_fingerprint", delete(promo))

    response = admin.post(
        "/notify",
        {"recipient_id": "ada", "notification_type": "promo", "channel": "email", "content": "Sale"},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {"fields": {"category": ["No category 'promo'."]}}
    assert_nothing_written()


def test_an_erasure_racing_a_send_erases_everything_and_the_send_is_400(admin, ada, namesakes):
    """The other way round: a send to ada commits its messages after the erasure (DELETE
    /api/v1/recipients/ada) collected what to delete with her, and before it deletes her."""
    sent = {}

    def send_in_another_connection():
        client = APIClient()
        client.credentials(**admin._credentials)
        try:
            sent["response"] = send(client, recipient="ada", channels=["email"])
        finally:
            connection.close()

    def send_meanwhile(sender, instance, **kwargs):
        sent["thread"] = threading.Thread(target=send_in_another_connection)
        sent["thread"].start()
        # Long enough for a send that nothing holds back to commit; one that waits for the
        # erasure is let go by its commit.
        sent["thread"].join(timeout=3)

    pre_delete.connect(send_meanwhile, sender=Recipient, dispatch_uid="send_meanwhile")
    try:
        erased = admin.delete("/api/v1/recipients/ada")
    finally:
        pre_delete.disconnect(dispatch_uid="send_meanwhile", sender=Recipient)
    sent["thread"].join(timeout=60)

    assert erased.status_code == 204, erased.content
    assert sent["response"].status_code == 400, sent["response"].content
    assert sent["response"].json()["error"]["code"] == "unknown_recipient"
    assert not Recipient.objects.filter(pk=ada.pk).exists()
    assert_nothing_written()


def delete_tenant(tenant):
    """As the admin's delete does: the tenant and, by cascade, its keys, categories and recipients."""
    return lambda: Tenant.objects.get(pk=tenant.pk).delete()


def assert_tenant_gone_answer(response):
    """What the tenant's key is answered once its tenant is gone, the same as any later request."""
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.json()["error"]["message"] == "Invalid, expired or revoked API key."


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "body",
    [
        {"recipient": "ada", "category": "promo"},
        {"recipient": {"id": "bob", "email": "bob@example.com"}, "channels": ["email"]},
        {"recipients": ["ada"], "channels": ["email"]},
    ],
    ids=["single_with_category", "recipient_object", "bulk"],
)
def test_tenant_deleted_after_the_lookups_is_401_as_its_key_is(admin, tenant, ada, promo, namesakes, body, monkeypatch):
    warm_recipient_cache(admin)
    delete_at(monkeypatch, "request_fingerprint", delete_tenant(tenant))

    response = send(admin, **body)

    assert_tenant_gone_answer(response)
    assert send(admin, **body).json()["error"] == response.json()["error"]  # as every request after it
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert_nothing_written()


def test_tenant_deleted_before_the_sends_commit_is_401(admin, tenant, ada, namesakes, monkeypatch):
    delete_at(monkeypatch, "send_cost", delete_tenant(tenant))

    response = send(admin, recipient="ada", channels=["email", "sms"])

    assert_tenant_gone_answer(response)
    assert_nothing_written()
