"""A preference deleted in the operator's console (Django admin) is forgotten by every cache at
once, as an API write is: the next send sees the defaults, not the deleted document. A delete
Redis cannot hear of is refused (preferences_unavailable), nothing deleted."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from preferences import services
from preferences.models import Preference
from tests.factories import RecipientFactory
from tests.notifications.conftest import EMAIL, SMS

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:preferences_preference_changelist")


@pytest.fixture
def console(client, db):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def opted_out(tenant):
    """Ada, who turned email off (SMS on: a send that only it blocks is a 403)."""
    ada = RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com", phone="+14155552671")
    Preference.objects.create(recipient=ada, channels={"email": False})
    return ada


def email_status(client) -> tuple[str, str]:
    """The status and reason of a send's email to Ada."""
    body = {"recipient": "ada", "channels": ["email", "sms"], "content": {**EMAIL, **SMS}, "data": {"code": 1}}
    response = client.post("/api/v1/notifications", body, format="json")
    assert response.status_code == 202, response.content
    [email] = [m for m in response.json()["messages"] if m["channel"] == "email"]
    return email["status"], email["reason"]


def warm(admin) -> None:
    for _ in range(2):  # the first send caches the recipient and its preferences, the second reads them
        assert email_status(admin) == ("suppressed", "channel_opted_out")


def test_a_preference_deleted_in_the_admin_is_gone_for_the_next_send(admin, console, opted_out):
    warm(admin)

    response = console.post(reverse("admin:preferences_preference_delete", args=[opted_out.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Preference.objects.exists()
    assert email_status(admin) == ("queued", "")
    assert services.cached_preferences(opted_out)["preferences"]["channels"]["email"] is True


def test_preferences_deleted_by_the_bulk_action_are_gone_for_the_next_send(admin, console, opted_out):
    warm(admin)

    response = console.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [opted_out.pk], "post": "yes"}
    )

    assert response.status_code == 302
    assert not Preference.objects.exists()
    assert email_status(admin) == ("queued", "")


@pytest.mark.django_db(transaction=True)  # as in production: the bulk delete's own transaction is the outermost
@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_a_delete_redis_cannot_hear_of_is_refused_and_deletes_nothing(console, opted_out, settings, bulk):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # the versions' Redis out of reach

    if bulk:
        body = {"action": "delete_selected", "_selected_action": [opted_out.pk], "post": "yes"}
        response = console.post(CHANGELIST, body, follow=True)
    else:
        url = reverse("admin:preferences_preference_delete", args=[opted_out.pk])
        response = console.post(url, {"post": "yes"}, follow=True)

    assert response.status_code == 200
    assert "cannot be written while Redis is unreachable" in response.content.decode()
    assert Preference.objects.filter(recipient=opted_out).exists()


def test_erasing_a_recipient_is_not_refused_for_its_preferences(opted_out, settings):
    # The recipient goes with its preferences: nothing is left to send to, and the recipient's
    # own invalidation, which only logs a failure, covers the caches (preferences/signals.py).
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    services.erase_recipient(opted_out)

    assert not Preference.objects.exists()
