"""The operator's console: every registered model's changelist and change form answer 200 for a
superuser, the actions do what they say, no secret reaches a page, the dashboard draws."""

from datetime import timedelta

import pytest
import redis
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from alertflow.admin import EstimatedCountPaginator
from alertflow.broker import priority_lists
from delivery.inbox_auth import rotate_inbox_secret
from delivery.models import InboxItem, InboxSecret, Provider, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from delivery.webhooks import events as webhook_events
from notifications import analytics, campaigns, lifecycle
from notifications.models import (
    Campaign,
    CampaignRun,
    DeliveryAttempt,
    DeliveryCount,
    DeliveryLatency,
    Message,
    Notification,
)
from preferences.models import Preference, Subscription, Suppression
from tenants.models import ApiKey, Quota
from tenants.usage import charge
from tests.delivery_config.conftest import make_provider
from tests.factories import (
    CategoryFactory,
    DeviceFactory,
    MembershipFactory,
    RecipientFactory,
    TemplateFactory,
    TopicFactory,
    api_key,
)

SMTP_PASSWORD = "smtp-password-never-shown"
WEBHOOK_SECRET = "whsec_never-shown"


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def console(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def world(tenant, superuser):
    """One row of every registered model. A model registered later without a row here fails
    `test_every_change_form_answers` by name: add it below."""
    category = CategoryFactory(tenant=tenant, key="alerts")
    MembershipFactory(tenant=tenant)
    key, secret = api_key(tenant)
    ada = RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com", phone="+14155552671")
    Preference.objects.create(recipient=ada, channels={"sms": False})
    Suppression.objects.create(tenant=tenant, channel="email", address="bounced@example.com", reason="hard_bounce")
    DeviceFactory(recipient=ada)
    topic = TopicFactory(tenant=tenant)
    Subscription.objects.create(topic=topic, recipient=ada)
    TemplateFactory(tenant=tenant)
    notification = Notification.objects.create(tenant=tenant, category=category, channels=["email", "inapp"])
    failed = Message.objects.create(
        tenant=tenant, notification=notification, recipient=ada, channel="email", status="failed", to=ada.email
    )
    DeliveryAttempt.objects.create(message=failed, provider="smtp-0", outcome="permanent", error="550 no such user")
    inapp = Message.objects.create(
        tenant=tenant, notification=notification, recipient=ada, channel="inapp", status="sent"
    )
    InboxItem.objects.create(message=inapp, tenant=tenant, recipient=ada, title="Hello")
    # What the status writes above would have aggregated (the dashboard reads the aggregates).
    hour = analytics.hour_of(timezone.now())
    DeliveryCount.objects.create(tenant=tenant, hour=hour, channel="email", category="alerts", status="failed", n=1)
    DeliveryCount.objects.create(tenant=tenant, hour=hour, channel="inapp", category="alerts", status="sent", n=1)
    DeliveryLatency.objects.create(
        tenant=tenant, hour=hour, channel="inapp", category="alerts", stage="sent", bucket=3, n=1
    )
    make_provider(
        tenant,
        config={
            "host": "smtp.example.com",
            "port": 25,
            "from_email": "a@acme.test",
            "username": "acme",
            "password": SMTP_PASSWORD,
        },
    )
    rotate_inbox_secret(tenant)
    Group.objects.create(name="operators")
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    CrontabSchedule.objects.create(minute="0")
    SolarSchedule.objects.create(event="sunrise", latitude=0, longitude=0)
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    PeriodicTask.objects.get_or_create(name="test tick", defaults={"task": "x", "interval": every})
    Quota.objects.create(tenant=tenant, channel="sms", monthly_limit=1000)
    charge(tenant, {"email": 1})  # a Usage row
    campaign = Campaign.objects.create(
        tenant=tenant, name="Weekly", template="t", channels=["email"], audience={"all": True},
        schedule={"cron": "0 9 * * MON", "timezone": "Europe/Paris"},
    )  # fmt: skip
    campaigns.sync_schedule(campaign)
    CampaignRun.objects.create(tenant=tenant, campaign=campaign, notification=notification, slot=timezone.now())
    hook = WebhookEndpoint(tenant=tenant, url="https://example.com/hooks", events=["webhook.ping"])
    hook.set_secret(WEBHOOK_SECRET)
    hook.save()
    webhook_events.emit(tenant.pk, "webhook.ping", {"endpoint_id": str(hook.pk)}, endpoints=[str(hook.pk)])
    WebhookAttempt.objects.create(delivery=WebhookDelivery.objects.get(), status_code=500, error="HTTP 500")
    return {"key": key, "secret": secret, "failed": failed, "notification": notification}


def admin_url(model, action, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{action}", args=args)


REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


@pytest.mark.parametrize("model", REGISTERED, ids=[model._meta.label for model in REGISTERED])
def test_every_changelist_answers(console, world, model):
    response = console.get(admin_url(model, "changelist"))
    assert response.status_code == 200
    # Searching and filtering by date run their queries too.
    model_admin = admin.site._registry[model]
    if model_admin.search_fields:
        assert console.get(admin_url(model, "changelist"), {"q": "ada"}).status_code == 200


@pytest.mark.parametrize("model", REGISTERED, ids=[model._meta.label for model in REGISTERED])
def test_every_change_form_answers(console, world, model):
    instance = model._default_manager.first()
    assert instance is not None, f"add a {model._meta.label} to the `world` fixture"
    response = console.get(admin_url(model, "change", instance.pk))
    assert response.status_code == 200


def test_pages_show_no_secret(console, world):
    provider = Provider.objects.get()
    page = console.get(admin_url(Provider, "change", provider.pk)).content.decode()
    assert SMTP_PASSWORD not in page
    assert provider.secrets not in page
    assert "password" in page  # the name of the secret that is set, not its value
    key = world["key"]
    page = console.get(admin_url(type(key), "change", key.pk)).content.decode()
    assert key.hashed not in page and world["secret"] not in page
    inbox_secret = InboxSecret.objects.get()
    page = console.get(admin_url(InboxSecret, "change", inbox_secret.pk)).content.decode()
    assert inbox_secret.secret not in page
    assert inbox_secret.reveal() not in page
    hook = WebhookEndpoint.objects.get()
    for page in (
        console.get(admin_url(WebhookEndpoint, "change", hook.pk)),
        console.get(admin_url(WebhookEndpoint, "changelist")),
    ):
        assert WEBHOOK_SECRET not in page.content.decode() and hook.secrets not in page.content.decode()


def test_message_shows_its_attempts_read_only(console, world):
    page = console.get(admin_url(Message, "change", world["failed"].pk)).content.decode()
    assert "550 no such user" in page
    assert 'name="delivery_attempts-0-error"' not in page  # shown, not an input


def test_retry_action_requeues_failed_messages(console, world):
    response = console.post(
        admin_url(Message, "changelist"), {"action": "retry", "_selected_action": [world["failed"].pk]}, follow=True
    )
    assert response.status_code == 200
    world["failed"].refresh_from_db()
    assert world["failed"].status == Message.Status.QUEUED


def test_cancel_action_cancels_only_waiting_messages(console, world, tenant):
    scheduled = Message.objects.create(
        tenant=tenant,
        notification=world["notification"],
        recipient=world["failed"].recipient,
        channel="sms",
        status="scheduled",
    )
    selected = [scheduled.pk, world["failed"].pk]
    console.post(admin_url(Message, "changelist"), {"action": "cancel_waiting", "_selected_action": selected})
    scheduled.refresh_from_db()
    world["failed"].refresh_from_db()
    assert scheduled.status == Message.Status.CANCELLED
    assert world["failed"].status == Message.Status.FAILED


def test_notification_cancel_action_names_one_cancelled_by_the_api_meanwhile_and_cancels_the_rest(
    console, world, admin, tenant, outsider_tenant, monkeypatch
):
    raced = world["notification"]
    # Something of it still waits: a notification with nothing left is not cancelled (409).
    Message.objects.create(
        tenant=tenant, notification=raced, recipient=world["failed"].recipient, channel="sms", status="scheduled"
    )
    other = Notification.objects.create(tenant=tenant, channels=["email"])
    waiting = Message.objects.create(
        tenant=tenant, notification=other, recipient=world["failed"].recipient, channel="email", status="scheduled"
    )
    outsiders = Notification.objects.create(tenant=outsider_tenant, channels=["email"])
    cancel = lifecycle.cancel

    def cancelled_by_the_api_first(notification):
        # The API's cancel commits after the action read the notifications as not cancelled.
        if not raced_by_the_api:
            raced_by_the_api.append(None)  # the API's own call below goes straight to `cancel`
            raced_by_the_api[0] = admin.post(f"/api/v1/notifications/{raced.pk}/cancel").status_code
        return cancel(notification)

    raced_by_the_api = []

    monkeypatch.setattr(lifecycle, "cancel", cancelled_by_the_api_first)

    response = console.post(
        admin_url(Notification, "changelist"),
        {"action": "cancel", "_selected_action": [raced.pk, other.pk]},
        follow=True,
    )

    assert response.status_code == 200
    shown = [(m.level_tag, m.message) for m in response.context["messages"]]
    assert ("warning", f"Left as they were: {raced.pk}: This notification was already cancelled.") in shown
    assert ("info", "Cancelled 1 message(s).") in shown
    assert raced_by_the_api == [200]
    waiting.refresh_from_db()
    assert waiting.status == Message.Status.CANCELLED
    assert Notification.objects.get(pk=other.pk).status == Notification.Status.CANCELLED
    assert Notification.objects.get(pk=outsiders.pk).status == Notification.Status.ACCEPTED


def test_disable_provider_action(console, world):
    provider = Provider.objects.get()
    console.post(admin_url(Provider, "changelist"), {"action": "disable", "_selected_action": [provider.pk]})
    provider.refresh_from_db()
    assert provider.enabled is False


def test_revoke_keys_action(console, world):
    key = world["key"]
    console.post(admin_url(type(key), "changelist"), {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked is not None


def test_a_key_revoked_by_the_action_is_refused_at_once_where_it_was_cached(console, world):
    from rest_framework.test import APIClient

    from tenants import keys

    keys.clear()
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=world["secret"])
    for _ in range(3):  # first sight, then the version-checked reload, then cached
        assert api.get("/api/v1/categories").status_code == 200

    console.post(admin_url(ApiKey, "changelist"), {"action": "revoke", "_selected_action": [world["key"].pk]})

    assert api.get("/api/v1/categories").status_code == 401


def test_dashboard_draws_messages_and_queue_depths(console, world):
    index = console.get(reverse("admin:index")).content.decode()
    assert reverse("admin-dashboard") in index
    response = console.get(reverse("admin-dashboard"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<svg" in page and "http://" not in page.split("<svg", 1)[1].split("</svg>")[0].replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert "email failed: 1" in page and "inapp sent: 1" in page


def test_dashboard_counts_come_from_the_aggregates_of_the_last_24_hours(console, tenant):
    now = timezone.now()
    DeliveryCount.objects.create(tenant=tenant, hour=analytics.hour_of(now), channel="sms", status="accepted", n=7)
    DeliveryCount.objects.create(tenant=tenant, hour=analytics.hour_of(now), channel="sms", status="sent", n=5)
    old = analytics.hour_of(now - timedelta(hours=30))
    DeliveryCount.objects.create(tenant=tenant, hour=old, channel="sms", status="sent", n=100)

    response = console.get(reverse("admin-dashboard"))

    [sms] = [row for row in response.context["table"] if row["channel"] == "sms"]
    assert sms["total"] == 7
    assert sms["counts"][list(response.context["statuses"]).index("sent")] == 5
    assert "sms sent: 5" in response.content.decode()


def test_dashboard_counts_every_priority_list_of_a_queue(console, settings):
    from alertflow.queues import ALL_QUEUES, PRIORITY_STEPS

    lists = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    lists.delete(*[name for queue in ALL_QUEUES for name in priority_lists(queue)])
    try:
        lists.rpush("email", "task")
        lists.rpush(f"email:{PRIORITY_STEPS[-1]}", "task", "task")
        depths = console.get(reverse("admin-dashboard")).context["queue_depths"]
    finally:
        lists.delete(*priority_lists("email"))
    assert depths["email"] == 3
    assert set(depths) == set(ALL_QUEUES)


def test_dashboard_is_for_staff_only(client, world):
    response = client.get(reverse("admin-dashboard"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_paginator_counts_exactly_when_filtered(db, tenant):
    RecipientFactory.create_batch(3, tenant=tenant)
    from preferences.models import Recipient

    assert EstimatedCountPaginator(Recipient.objects.filter(tenant=tenant).order_by("id"), 2).count == 3


def test_a_suppression_is_shown_and_deleted_never_saved(console, world, settings):
    suppression = Suppression.objects.first()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # Redis down: a save's "some" mark would fail (a 500)

    assert console.get(admin_url(Suppression, "change", suppression.pk)).status_code == 200
    assert console.post(admin_url(Suppression, "change", suppression.pk), {}).status_code == 403
    assert Suppression.objects.filter(pk=suppression.pk).exists()
    response = console.post(admin_url(Suppression, "delete", suppression.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Suppression.objects.filter(pk=suppression.pk).exists()
