from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Message, Notification
from preferences.models import Recipient
from tests.factories import CategoryFactory, RecipientFactory

from .conftest import EMAIL, send

pytestmark = pytest.mark.django_db


def test_single_send_answers_202_with_every_message(admin, ada, promo):
    response = send(admin, recipient="ada", category="promo", channels=["email", "sms"], data={"code": "1"})

    assert response.status_code == 202
    body = response.json()
    notification = Notification.objects.get(pk=body["id"])
    assert notification.priority == "low"  # the category's default
    assert [(m["channel"], m["status"], m["recipient"]) for m in body["messages"]] == [
        ("email", "queued", "ada"),
        ("sms", "queued", "ada"),
    ]
    assert Message.objects.filter(notification=notification, status="queued").count() == 2


def test_channels_default_to_the_categorys(admin, ada, promo):
    body = send(admin, recipient="ada", category="promo").json()

    assert [m["channel"] for m in body["messages"]] == ["email"]


def test_recipient_object_upserts_the_recipient(admin, tenant):
    response = send(admin, recipient={"id": "new-user", "email": "new@example.com", "name": "Nu"}, channels=["email"])

    assert response.status_code == 202
    recipient = Recipient.objects.get(tenant=tenant, external_id="new-user")
    assert (recipient.email, recipient.name) == ("new@example.com", "Nu")


def test_unknown_recipient_is_400_and_writes_nothing(admin):
    response = send(admin, recipient="ghost", channels=["email"])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_recipient"
    assert not Notification.objects.exists()


def test_opted_out_channel_is_suppressed_with_the_reason(admin, ada):
    admin.put("/api/v1/recipients/ada/preferences", {"channels": {"sms": False}}, format="json")

    body = send(admin, recipient="ada", channels=["email", "sms"]).json()

    statuses = {m["channel"]: (m["status"], m["reason"]) for m in body["messages"]}
    assert statuses == {"email": ("queued", ""), "sms": ("suppressed", "channel_opted_out")}


def test_every_channel_blocked_is_403_preference_rejected_and_writes_nothing(admin, ada, promo):
    admin.put("/api/v1/recipients/ada/preferences", {"categories": {"promo": {"email": False}}}, format="json")

    response = send(admin, recipient="ada", category="promo", channels=["email"])

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "preference_rejected"
    assert not Notification.objects.exists()


def test_critical_category_ignores_opt_outs(admin, ada, otp):
    admin.put("/api/v1/recipients/ada/preferences", {"channels": {"sms": False}}, format="json")

    body = send(admin, recipient="ada", category="otp").json()

    assert [(m["channel"], m["status"]) for m in body["messages"]] == [("sms", "queued")]


def test_channel_without_address_is_suppressed_and_none_at_all_is_422(admin, tenant):
    RecipientFactory(tenant=tenant, external_id="mailonly", email="m@example.com", phone="")

    mixed = send(admin, recipient="mailonly", channels=["email", "sms"]).json()
    none = send(admin, recipient="mailonly", channels=["sms"])

    assert {m["channel"]: m["reason"] for m in mixed["messages"]} == {"email": "", "sms": "no_address"}
    assert none.status_code == 422
    assert none.json()["error"]["code"] == "no_deliverable_channel"


def test_send_at_in_the_future_schedules_the_message(admin, ada):
    when = timezone.now() + timedelta(hours=2)

    body = send(admin, recipient="ada", channels=["email"], send_at=when.isoformat()).json()

    message = Message.objects.get(pk=body["messages"][0]["id"])
    assert message.status == "scheduled"
    assert message.next_attempt == when


def test_quiet_hours_defer_the_message(admin, ada):
    now = timezone.now()
    window = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
    }
    admin.put("/api/v1/recipients/ada/preferences", {"quiet_hours": window}, format="json")

    body = send(admin, recipient="ada", channels=["email"]).json()

    message = Message.objects.get(pk=body["messages"][0]["id"])
    assert (message.status, message.reason) == ("scheduled", "quiet_hours")
    assert message.next_attempt > now


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channels": ["email"], "content": EMAIL}, "recipient"),
        ({"recipient": "ada", "topic": "t", "channels": ["email"], "content": EMAIL}, "recipient"),
        ({"recipient": "ada", "channels": ["email"]}, "template"),
        ({"recipient": "ada", "channels": ["email"], "content": EMAIL, "template": "x"}, "template"),
        ({"recipient": "ada", "content": EMAIL}, "channels"),
        ({"recipient": "ada", "channels": ["fax"], "content": EMAIL}, "channels"),
        ({"recipient": "ada", "category": "nope", "channels": ["email"], "content": EMAIL}, "category"),
        ({"recipient": "ada", "channels": ["sms"], "content": EMAIL}, "content"),
        ({"recipient": "ada", "channels": ["email"], "content": {"email": {"subject": "{% load x %}"}}}, "content"),
        ({"recipient": "ada", "channels": ["email"], "template": "missing"}, "template"),
        ({"recipient": "ada", "channels": ["email"], "content": EMAIL, "priority": "urgent"}, "priority"),
        ({"recipient": "ada", "channels": ["email"], "content": EMAIL, "send_at": "tomorrow"}, "send_at"),
        ({"recipient": {"email": "x@example.com"}, "channels": ["email"], "content": EMAIL}, "recipient"),
        ({"recipient": {"id": "b", "email": "not-an-email"}, "channels": ["email"], "content": EMAIL}, "recipient"),
        ({"recipients": [], "channels": ["email"], "content": EMAIL}, "recipients"),
    ],
)
def test_invalid_send_is_400_naming_the_field(admin, ada, body, field):
    response = admin.post("/api/v1/notifications", body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["details"]["fields"]
    assert not Notification.objects.exists()


@pytest.mark.parametrize("stored", [["email", "fax"], ["email", None], ["email", 3], "email"])
@pytest.mark.parametrize(
    "body",
    [
        {"recipient": "ada", "content": EMAIL},
        {"recipient": "ada", "template": "welcome"},
        {"recipients": ["ada"], "content": EMAIL},
    ],
    ids=["content", "template", "bulk"],
)
def test_a_stored_category_with_a_channel_no_send_can_use_is_400_naming_the_category(admin, ada, tenant, stored, body):
    """A category row the categories API would refuse now (written by hand, or before its
    rule): a send that takes its channels from it is told which category to fix, and one that
    names its channels is sent."""
    CategoryFactory(tenant=tenant, key="legacy", channels=stored)
    admin.post("/api/v1/templates", {"code": "welcome", "name": "W", "channels": EMAIL}, format="json")

    response = admin.post("/api/v1/notifications", {**body, "category": "legacy"}, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]["fields"]) == ["category"]
    assert "PATCH /api/v1/categories/legacy" in error["message"]
    assert not Notification.objects.exists()
    named = admin.post("/api/v1/notifications", {**body, "category": "legacy", "channels": ["email"]}, format="json")
    assert named.status_code == 202, named.content


def test_template_send_pins_the_version_for_the_recipients_locale(admin, ada, tenant):
    admin.post("/api/v1/templates", {"code": "welcome", "name": "W", "channels": EMAIL}, format="json")
    admin.post("/api/v1/templates", {"code": "welcome", "name": "W", "locale": "fr", "channels": EMAIL}, format="json")
    Recipient.objects.filter(pk=ada.pk).update(locale="fr-CA")

    body = send(admin, recipient="ada", channels=["email"], template="welcome", content=None)

    assert body.status_code == 202, body.content
    message = Message.objects.select_related("template_version__template").get(pk=body.json()["messages"][0]["id"])
    assert message.template_version.template.locale == "fr"


def test_template_without_the_channel_is_400(admin, ada):
    admin.post("/api/v1/templates", {"code": "welcome", "name": "W", "channels": EMAIL}, format="json")

    response = send(admin, recipient="ada", channels=["sms"], template="welcome", content=None)

    assert response.status_code == 400
    assert "channels" in response.json()["error"]["details"]["fields"]


def test_member_cannot_send(member, ada):
    assert send(member, recipient="ada", channels=["email"]).status_code == 403


def test_body_over_the_limit_is_413(admin, ada, settings):
    settings.ALERTFLOW_MAX_BODY_BYTES = 1000

    response = send(admin, recipient="ada", channels=["email"], data={"blob": "x" * 2000})

    assert response.status_code == 413


def test_outsider_cannot_send_to_another_tenants_recipient(outsider, ada):
    response = send(outsider, recipient="ada", channels=["email"])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_recipient"


def test_a_pinned_version_missing_in_the_recipients_locale_falls_back_to_the_default_locale(admin, ada):
    admin.post("/api/v1/templates", {"code": "w", "name": "W", "channels": EMAIL}, format="json")
    admin.put("/api/v1/templates/w", {"channels": EMAIL}, format="json")  # en has versions 1 and 2
    admin.post("/api/v1/templates", {"code": "w", "name": "W", "locale": "fr", "channels": EMAIL}, format="json")
    Recipient.objects.filter(pk=ada.pk).update(locale="fr")

    body = send(admin, recipient="ada", channels=["email"], template="w", template_version=2, content=None)

    assert body.status_code == 202, body.content
    version = Message.objects.select_related("template_version__template").get().template_version
    assert (version.template.locale, version.number) == ("en", 2)


def test_a_template_only_in_another_locale_is_still_sent(admin, ada):
    admin.post("/api/v1/templates", {"code": "fr_only", "name": "F", "locale": "fr", "channels": EMAIL}, format="json")

    response = send(admin, recipient="ada", channels=["email"], template="fr_only", content=None)

    assert response.status_code == 202, response.content
    assert Message.objects.get().template_version.template.locale == "fr"


def test_a_critical_send_does_not_read_preferences(admin, ada, otp, monkeypatch):
    from preferences import services as preference_services

    def fail(*args, **kwargs):
        raise AssertionError("preferences were read for a critical category")

    monkeypatch.setattr(preference_services, "cached_preferences", fail)
    monkeypatch.setattr("notifications.services.cached_preferences_many", fail)

    assert send(admin, recipient="ada", category="otp").status_code == 202
