import threading

import pytest
from django.db import connection

from notifications import services
from notifications.models import Message, Notification
from tests.factories import RecipientFactory

from .conftest import send

# Also run on SQLite, the database of `make run` (make test's second pass).
pytestmark = pytest.mark.sqlite


@pytest.mark.django_db
def test_repeated_header_key_answers_the_first_response_and_sends_nothing_new(admin, ada):
    first = admin.post(
        "/api/v1/notifications",
        {"recipient": "ada", "channels": ["email"], "content": {"email": {"subject": "s", "text": "t"}}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="login-8841",
    )
    again = admin.post(
        "/api/v1/notifications",
        {"recipient": "ada", "channels": ["email"], "content": {"email": {"subject": "s", "text": "t"}}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="login-8841",
    )

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Notification.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_body_key_works_like_the_header(admin, ada):
    first = send(admin, recipient="ada", channels=["email"], idempotency_key="k1").json()
    again = send(admin, recipient="ada", channels=["email"], idempotency_key="k1").json()

    assert again == first
    assert Notification.objects.count() == 1


@pytest.mark.django_db
def test_same_key_with_another_body_is_409(admin, ada):
    send(admin, recipient="ada", channels=["email"], idempotency_key="k1")

    response = send(admin, recipient="ada", channels=["sms"], idempotency_key="k1")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"


@pytest.mark.django_db
def test_keys_are_per_tenant(admin, outsider, ada, outsider_tenant):
    RecipientFactory(tenant=outsider_tenant, external_id="ada")

    send(admin, recipient="ada", channels=["email"], idempotency_key="shared")
    response = send(outsider, recipient="ada", channels=["email"], idempotency_key="shared")

    assert response.status_code == 202
    assert Notification.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_one_notification(admin, ada):
    """The database constraint, not a read-then-write, decides: run the requests at once."""
    barrier = threading.Barrier(4)
    results = []

    def post():
        barrier.wait()
        try:
            results.append(send(admin, recipient="ada", channels=["email"], idempotency_key="race").json()["id"])
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 4
    assert len(set(results)) == 1
    assert Notification.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_a_key_older_than_24_hours_is_free_again(admin, ada):
    from datetime import timedelta

    from django.utils import timezone

    first = send(admin, recipient="ada", channels=["email"], idempotency_key="daily").json()["id"]
    Notification.objects.filter(pk=first).update(created=timezone.now() - timedelta(hours=25))

    again = send(admin, recipient="ada", channels=["sms"], idempotency_key="daily")

    assert again.status_code == 202
    assert again.json()["id"] != first
    assert Notification.objects.get(pk=first).idempotency_key is None
    assert Notification.objects.get(pk=again.json()["id"]).idempotency_key == "daily"


@pytest.mark.django_db(transaction=True)
def test_a_key_committed_after_the_lookup_is_met_at_the_insert_and_its_response_replayed(admin, ada, monkeypatch):
    """Another request with the key commits between the send's lookup of the key and its INSERT:
    the unique constraint refuses the INSERT (a part of the accept's one statement of writes),
    and the send answers the other's response."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's write lock makes the other request wait for the send's commit: no race")
    original = services._new_notification
    others = []

    def other_request_commits_first(*args, **kwargs):
        monkeypatch.setattr(services, "_new_notification", original)
        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join(timeout=60)
        assert others, "the other request did not answer"
        return original(*args, **kwargs)

    def other_request():
        try:
            others.append(send(admin, recipient="ada", channels=["email"], idempotency_key="race"))
        finally:
            connection.close()

    monkeypatch.setattr(services, "_new_notification", other_request_commits_first)

    response = send(admin, recipient="ada", channels=["email"], idempotency_key="race")

    assert others[0].status_code == response.status_code == 202
    assert response.json() == others[0].json()
    assert response["Idempotent-Replayed"] == "true"
    assert Notification.objects.count() == 1
    assert Message.objects.count() == 1
