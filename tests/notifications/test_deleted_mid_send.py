"""A send whose recipient, category or tenant another request deletes while it is being accepted
is answered as if they had not existed (400 `unknown_recipient`, 400 naming `category`, 401 as
its key), never a 500, and writes nothing. The other way round, a deletion racing a send (the
recipient's erasure, the admin's delete of the tenant) deletes everything, never a 500.

The foreign keys are checked when the send commits (Django makes them deferrable), so the
deletion has to land between the send's lookup and its commit. Each test deletes from a
connection of its own at a function boundary of the service: before its transaction (the
category was looked up by the serializer; the recipient was read from the process's cache,
whose version the request read when it authenticated), or inside it just before its writes
(PostgreSQL only: SQLite's IMMEDIATE transactions hold every other writer until the commit).
"""

import threading
import time
from contextlib import contextmanager

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.messages import get_messages
from django.db import connection
from django.db.models.signals import pre_delete
from django.urls import reverse
from rest_framework.test import APIClient

from notifications import services
from notifications.models import DeliveryAttempt, Message, Notification
from preferences.models import Recipient
from preferences.services import erase_recipient
from tenants.models import Category, Quota, Tenant
from tenants.services import DELETE_TENANTS_ATTEMPTS, delete_tenants
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
    `request_fingerprint` comes before the send's transaction, `send_cost` inside it, just
    before its writes (whose foreign keys are checked at the commit)."""
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


def for_up_to_3_seconds(thread) -> None:
    # Long enough for a send that nothing holds back to commit; one that waits for the
    # deletion is let go by its commit.
    thread.join(timeout=3)


@contextmanager
def sent_meanwhile(client, model, wait=for_up_to_3_seconds, send_deadlock_timeout_ms=None):
    """A send to ada with `client`'s key, from another connection, started by the first
    pre_delete of a `model` row inside the block: after the deletion collected what goes with the
    row, before it deletes anything, which goes on after `wait(thread)`. Yields what the send was
    answered, once it is (`response`). `send_deadlock_timeout_ms`: the send's connection's
    `deadlock_timeout` (a session setting)."""
    sent = {}

    def send_in_another_connection():
        other = APIClient()
        other.credentials(**client._credentials)
        try:
            if send_deadlock_timeout_ms is not None:
                with connection.cursor() as cursor:
                    cursor.execute(f"SET deadlock_timeout = {int(send_deadlock_timeout_ms)}")
            sent["response"] = send(other, recipient="ada", channels=["email"])
        finally:
            connection.close()

    def send_meanwhile(sender, instance, **kwargs):
        if "thread" in sent:
            return
        sent["thread"] = threading.Thread(target=send_in_another_connection)
        sent["thread"].start()
        wait(sent["thread"])

    pre_delete.connect(send_meanwhile, sender=model, dispatch_uid="send_meanwhile")
    try:
        yield sent
    finally:
        pre_delete.disconnect(dispatch_uid="send_meanwhile", sender=model)
        if "thread" in sent:
            sent["thread"].join(timeout=60)
    assert "response" in sent, "the send did not finish"


def test_an_erasure_racing_a_send_erases_everything_and_the_send_is_400(admin, ada, namesakes):
    """The other way round: a send to ada commits its messages after the erasure (DELETE
    /api/v1/recipients/ada) collected what to delete with her, and before it deletes her."""
    with sent_meanwhile(admin, Recipient) as sent:
        erased = admin.delete("/api/v1/recipients/ada")

    assert erased.status_code == 204, erased.content
    assert sent["response"].status_code == 400, sent["response"].content
    assert sent["response"].json()["error"]["code"] == "unknown_recipient"
    assert not Recipient.objects.filter(pk=ada.pk).exists()
    assert_nothing_written()


def delete_tenant(tenant):
    """As the admin's delete does: the tenant and, by cascade, its keys, categories and recipients."""
    return lambda: delete_tenants(Tenant.objects.filter(pk=tenant.pk))


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


def assert_deleted_in_the_admin(response, tenant):
    """The admin deleted the tenant and every row of any table that names it (a key to it), and
    nothing of the other tenant."""
    assert response.status_code == 302, response.content
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    for relation in Tenant._meta.related_objects:
        left = relation.related_model.objects.filter(**{relation.field.name: tenant.pk})
        assert not left.exists(), f"{relation.related_model.__name__} rows of the deleted tenant are left"
    assert_nothing_written()


DELETE_ONE = "one"  # its delete page
DELETE_SELECTED = "selected"  # the changelist's bulk action


def delete_in_the_admin(console, tenant, how: str):
    if how == DELETE_ONE:
        return console.post(reverse("admin:tenants_tenant_delete", args=[tenant.pk]), {"post": "yes"})
    return console.post(
        reverse("admin:tenants_tenant_changelist"),
        {"action": "delete_selected", "_selected_action": [tenant.pk], "post": "yes"},
    )


@pytest.mark.parametrize("how", [DELETE_ONE, DELETE_SELECTED])
def test_a_tenant_deletion_racing_a_send_deletes_everything_and_the_send_is_401(
    admin_client, admin, tenant, ada, namesakes, how
):
    """A send of the tenant commits its rows after the admin's delete collected what to delete
    with the tenant, and before it deletes it."""
    with sent_meanwhile(admin, Tenant) as sent:
        deleted = delete_in_the_admin(admin_client, tenant, how)

    assert_deleted_in_the_admin(deleted, tenant)
    assert_tenant_gone_answer(sent["response"])
    # The process had cached the key: the deletion made it look again.
    assert_tenant_gone_answer(send(admin, recipient="ada", channels=["email"]))


def until_it_waits_for_a_lock(thread) -> None:
    """Until the send waits for a lock the deletion holds (the tenant's row, at its commit)."""
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("the send never waited for the deletion")


def test_a_tenant_deletion_aborted_by_a_deadlock_with_a_send_is_tried_again_after_it(
    admin_client, admin, tenant, ada, namesakes
):
    """The tenant has an email quota and sent earlier this month: a send updates its usage
    counter row (shard 0, the row of every charge against a quota, alertflow/counters.py)
    before it waits for the deletion, which then waits for the row. PostgreSQL aborts the
    deletion: the send commits, and the deletion, tried again, deletes its rows too.

    PostgreSQL looks for a deadlock once per wait, when it has lasted `deadlock_timeout`, and
    aborts the transaction whose look found it. The send waits first, so its look must not come
    before the deletion waits too (then it finds none) nor find the cycle first (then the send is
    the one aborted, the test below): its connection looks only after a minute, and the
    deletion's look (after PostgreSQL's 1 s) is the one that finds the cycle, however busy the
    machine. With a fixed pause instead, a loaded machine sometimes ran the send's look late."""
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=1000)
    assert send(admin, recipient="ada", channels=["email"]).status_code == 202

    with sent_meanwhile(admin, Tenant, wait=until_it_waits_for_a_lock, send_deadlock_timeout_ms=60_000) as sent:
        deleted = delete_in_the_admin(admin_client, tenant, DELETE_ONE)

    assert_deleted_in_the_admin(deleted, tenant)
    assert sent["response"].status_code == 202, sent["response"].content
    assert_tenant_gone_answer(send(admin, recipient="ada", channels=["email"]))


@contextmanager
def attempts_recorded_meanwhile(message, tries: int):
    """In the first `tries` of the deletion's tries, a worker records an attempt of `message`
    (from another connection) just after the deletion deleted the tenant's attempts; yields the
    list of those recordings."""
    recorded = []

    def record_in_another_connection():
        try:
            DeliveryAttempt.objects.create(message_id=message.pk, provider="smtp", outcome="sent")
        finally:
            connection.close()

    def after_the_attempts_delete(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if len(recorded) < tries and sql.startswith('DELETE FROM "notifications_deliveryattempt"'):
            recorded.append(threading.Thread(target=record_in_another_connection))
            recorded[-1].start()
            recorded[-1].join(timeout=10)
        return result

    with connection.execute_wrapper(after_the_attempts_delete):
        yield recorded


def test_a_tenant_deletion_meeting_an_attempt_recorded_meanwhile_deletes_it_too(
    admin_client, admin, tenant, ada, namesakes
):
    """A worker records an attempt of one of the tenant's messages after the deletion deleted
    their attempts and before it deletes the messages. The attempt names only its message, so
    the tenant's lock does not hold it back; the message's DELETE then broke its foreign key at
    the deletion's commit (IntegrityError: a 500 in the admin, nothing deleted). The deletion is
    tried again, and deletes it with the rest."""
    notification_id = send(admin, recipient="ada", channels=["email"]).json()["id"]
    message = Message.objects.get(notification_id=notification_id)

    with attempts_recorded_meanwhile(message, tries=1) as recorded:
        deleted = delete_in_the_admin(admin_client, tenant, DELETE_ONE)

    assert recorded, "the deletion never deleted attempts"
    assert_deleted_in_the_admin(deleted, tenant)
    assert not DeliveryAttempt.objects.filter(message_id=message.pk).exists()


@pytest.mark.parametrize("how", [DELETE_ONE, DELETE_SELECTED])
def test_a_tenant_deletion_that_loses_every_try_is_an_error_on_the_page_and_deletes_nothing(
    admin_client, admin, tenant, ada, namesakes, how
):
    """As above, but in each of the deletion's tries: after its last one the admin says so on
    the page, for the operator to try again, where it answered 500. Nothing is deleted, nor
    logged as deleted."""
    notification_id = send(admin, recipient="ada", channels=["email"]).json()["id"]
    message = Message.objects.get(notification_id=notification_id)

    with attempts_recorded_meanwhile(message, tries=DELETE_TENANTS_ATTEMPTS) as recorded:
        refused = delete_in_the_admin(admin_client, tenant, how)

    assert len(recorded) == DELETE_TENANTS_ATTEMPTS
    assert refused.status_code == 302, refused.content
    shown = [str(m) for m in get_messages(refused.wsgi_request)]
    assert any("try again" in m for m in shown), shown
    assert not any("success" in m for m in shown), shown
    assert Tenant.objects.filter(pk=tenant.pk).exists()
    assert Message.objects.filter(pk=message.pk).exists()
    assert DeliveryAttempt.objects.filter(message_id=message.pk).count() == DELETE_TENANTS_ATTEMPTS
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()


def test_a_send_aborted_by_a_deadlock_with_its_tenants_deletion_is_401(admin_client, admin, tenant, ada, namesakes):
    """As above, but the send is the one PostgreSQL aborts: it waits for the deletion to end and
    answers as its key is from then on."""
    assert send(admin, recipient="ada", channels=["email"]).status_code == 202

    with sent_meanwhile(admin, Tenant, wait=until_it_waits_for_a_lock) as sent:
        deleted = delete_in_the_admin(admin_client, tenant, DELETE_SELECTED)

    assert_deleted_in_the_admin(deleted, tenant)
    assert_tenant_gone_answer(sent["response"])
