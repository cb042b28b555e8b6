"""Monthly quotas per channel: refused at accept with 429 `quota_exceeded`, bulk refused whole,
never overshot by concurrent sends; GET /api/v1/usage reports used and left."""

import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection, transaction

from alertflow.compiled import CompiledInsert
from alertflow.errors import ApiError
from alertflow.together import run_together
from notifications import campaigns
from notifications.models import CampaignRun, Message, Notification
from preferences.models import Recipient
from tenants.models import Category, Quota, Usage
from tenants.usage import Charge, charge, next_period_start, period_start
from tests.factories import CategoryFactory, RecipientFactory, TopicFactory
from tests.notifications.conftest import EMAIL, SMS

pytestmark = pytest.mark.django_db

insert_categories = CompiledInsert(Category)


@pytest.fixture
def ada(tenant):
    return RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com", phone="+14155552671")


def send(client, **body):
    return client.post("/api/v1/notifications", {"content": {**EMAIL, **SMS}, **body}, format="json")


def test_usage_is_unlimited_and_zero_by_default(member):
    body = member.get("/api/v1/usage").json()

    assert body["channels"]["email"] == {"used": 0, "limit": None, "left": None}
    assert set(body["channels"]) == {"email", "sms", "push", "inapp"}
    assert body["period_start"] == period_start().isoformat()


@pytest.mark.sqlite
def test_single_sends_count_until_the_quota_then_429(admin, member, tenant, ada):
    Quota.objects.create(tenant=tenant, channel="sms", monthly_limit=2)

    assert send(admin, recipient="ada", channels=["email", "sms"]).status_code == 202
    assert send(admin, recipient="ada", channels=["sms"]).status_code == 202
    refused = send(admin, recipient="ada", channels=["email", "sms"])

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"]["channels"] == {"sms": {"limit": 2, "used": 2, "requested": 1}}
    assert int(refused["Retry-After"]) > 0
    assert Notification.objects.count() == 2  # the refused send wrote nothing
    usage = member.get("/api/v1/usage").json()["channels"]
    # The refused send's email was not charged either.
    assert usage["sms"] == {"used": 2, "limit": 2, "left": 0}
    assert usage["email"] == {"used": 1, "limit": None, "left": None}


def test_suppressed_messages_cost_nothing(admin, member, tenant, ada):
    admin.put("/api/v1/recipients/ada/preferences", {"channels": {"sms": False}}, format="json")

    assert send(admin, recipient="ada", channels=["email", "sms"]).status_code == 202

    usage = member.get("/api/v1/usage").json()["channels"]
    assert (usage["email"]["used"], usage["sms"]["used"]) == (1, 0)


@pytest.mark.sqlite
def test_bulk_over_quota_is_refused_whole_before_anything_is_written(admin, tenant):
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=3)
    targets = [{"id": f"u{n}", "email": f"u{n}@example.com"} for n in range(4)]

    refused = admin.post(
        "/api/v1/notifications", {"recipients": targets, "channels": ["email"], "content": EMAIL}, format="json"
    )

    assert refused.status_code == 429
    assert refused.json()["error"]["details"]["channels"]["email"] == {"limit": 3, "used": 0, "requested": 4}
    assert not Notification.objects.exists()
    assert not Message.objects.exists()
    assert not Recipient.objects.exists()
    assert not Usage.objects.filter(used__gt=0).exists()
    # Within the quota, the same bulk send is accepted and charged for every recipient.
    accepted = admin.post(
        "/api/v1/notifications", {"recipients": targets[:3], "channels": ["email"], "content": EMAIL}, format="json"
    )
    assert accepted.status_code == 202
    assert Usage.objects.get(tenant=tenant, channel="email").used == 3


def test_topic_send_costs_its_subscribers(admin, tenant):
    topic = TopicFactory(tenant=tenant, key="news")
    for _ in range(3):
        topic.subscriptions.create(recipient=RecipientFactory(tenant=tenant))
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=2)

    response = admin.post(
        "/api/v1/notifications", {"topic": "news", "channels": ["email"], "content": EMAIL}, format="json"
    )

    assert response.status_code == 429


def test_quotas_and_usage_belong_to_one_tenant(admin, outsider, tenant, outsider_tenant, ada):
    Quota.objects.create(tenant=outsider_tenant, channel="email", monthly_limit=0)

    assert send(admin, recipient="ada", channels=["email"]).status_code == 202

    theirs = outsider.get("/api/v1/usage").json()["channels"]["email"]
    assert theirs == {"used": 0, "limit": 0, "left": 0}
    # Another tenant's recipient is not reachable, quota or not.
    assert send(outsider, recipient="ada", channels=["email"]).status_code == 400


def test_usage_needs_a_key(client):
    assert client.get("/api/v1/usage").status_code == 401


@pytest.mark.sqlite
def test_last_months_use_does_not_count_against_this_month(admin, tenant, ada):
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=1)
    last_month = period_start(datetime.combine(period_start(), time.min, tzinfo=UTC) - timedelta(days=1))
    Usage.objects.create(tenant=tenant, channel="email", period=last_month, used=1)

    # The month's first send makes this month's counter row, from zero.
    assert send(admin, recipient="ada", channels=["email"]).status_code == 202
    assert send(admin, recipient="ada", channels=["email"]).status_code == 429

    counters = dict(Usage.objects.filter(tenant=tenant, channel="email").values_list("period", "used"))
    assert counters == {last_month: 1, period_start(): 1}


@pytest.mark.sqlite
def test_a_quota_set_during_the_month_counts_what_was_charged_before_it(admin, member, tenant, ada):
    """Charged while the channel had no quota, in the shards of the sends' connections
    (alertflow/counters.py): the quota's check and the usage add them up."""
    for shard, used in ((3, 7), (5, 2)):
        Usage.objects.create(tenant=tenant, channel="email", period=period_start(), shard=shard, used=used)
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=10)

    assert send(admin, recipient="ada", channels=["email"]).status_code == 202
    refused = send(admin, recipient="ada", channels=["email"])

    assert refused.status_code == 429
    assert refused.json()["error"]["details"]["channels"]["email"] == {"limit": 10, "used": 10, "requested": 1}
    assert member.get("/api/v1/usage").json()["channels"]["email"] == {"used": 10, "limit": 10, "left": 0}


def test_a_new_month_starts_from_zero():
    assert period_start(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)).isoformat() == "2026-12-01"
    assert next_period_start(period_start(datetime(2026, 12, 15, tzinfo=UTC))).isoformat() == "2027-01-01"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_other_writes", [False, True])
def test_concurrent_sends_never_overshoot_the_quota(tenant, with_other_writes):
    """Also when the charge is one statement with other writes, as the accept's is."""
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=10)
    outcomes = []
    start = threading.Barrier(8)

    def worker():
        try:
            start.wait()
            for _ in range(3):
                try:
                    with transaction.atomic():
                        if with_other_writes:
                            pending = Charge.of(tenant, {"email": 1})
                            category = CategoryFactory.build(tenant=tenant)
                            counts = run_together([insert_categories.statement([category]), *pending.statements])
                            pending.settle(counts[1:])
                        else:
                            charge(tenant, {"email": 1})
                    outcomes.append("ok")
                except ApiError:
                    outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count("ok") == 10
    assert outcomes.count("refused") == 14
    assert Usage.objects.get(tenant=tenant, channel="email").used == 10


def start_campaign(admin, tenant, recipients: int) -> str:
    """A campaign to `recipients` recipients (email), created but not run."""
    for n in range(recipients):
        RecipientFactory(tenant=tenant, external_id=f"c{n}", email=f"c{n}@example.com")
    template = {"code": "digest", "name": "Digest", "channels": EMAIL}
    assert admin.post("/api/v1/templates", template, format="json").status_code == 201
    body = {"name": "Weekly", "template": "digest", "channels": ["email"], "audience": {"all": True}}
    body["schedule"] = {"cron": "0 9 * * MON", "timezone": "UTC"}
    response = admin.post("/api/v1/campaigns", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_campaign_run_is_charged_and_refused_whole_over_quota(admin, member, tenant):
    campaign_id = start_campaign(admin, tenant, 3)
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=2)

    refused = admin.post(f"/api/v1/campaigns/{campaign_id}/run")

    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert not CampaignRun.objects.exists()
    assert not Notification.objects.exists()

    Quota.objects.filter(tenant=tenant).update(monthly_limit=3)
    assert admin.post(f"/api/v1/campaigns/{campaign_id}/run").status_code == 202
    assert member.get("/api/v1/usage").json()["channels"]["email"]["used"] == 3


def test_a_scheduled_campaign_run_over_quota_starts_nothing(admin, tenant):
    campaign_id = start_campaign(admin, tenant, 3)
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=2)

    assert campaigns.trigger(campaign_id, datetime(2026, 12, 7, 9, 0, 30, tzinfo=UTC)) is None

    assert not CampaignRun.objects.exists()
    assert not Usage.objects.filter(used__gt=0).exists()
