"""GET /api/v1/analytics/deliveries: numbers against known sends, read from the aggregates the
status writes keep (notifications/analytics.py), atomic under concurrent writers."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from delivery import receipts
from delivery.channels.base import Receipt
from delivery.pipeline import deliver
from notifications import analytics
from notifications.models import DeliveryCount, DeliveryLatency, Message
from tenants.models import Quota
from tests.factories import CategoryFactory, RecipientFactory

from .conftest import CONTENT, add_provider, smtp_config

URL = "/api/v1/analytics/deliveries"


def send(client, recipient, channels=("email",)):
    body = {"recipient": recipient, "channels": list(channels), "content": CONTENT, "category": "alerts"}
    response = client.post("/api/v1/notifications", body, format="json")
    assert response.status_code == 202, response.content
    return [Message.objects.get(pk=m["id"]) for m in response.json()["messages"]]


@pytest.fixture
def known_sends(admin, tenant, smtp_server):
    """Four emails of category `alerts`, accepted two seconds ago: three sent through SMTP (one
    then delivered, one bounced, by receipts), one expired before it was sent. Plus one SMS
    the recipient opted out of (suppressed)."""
    CategoryFactory(tenant=tenant, key="alerts")
    provider = add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="mailer")
    for name in ("a", "b", "c", "d"):
        RecipientFactory(tenant=tenant, external_id=name, email=f"{name}@example.com", phone="+14155552671")
    admin.put("/api/v1/recipients/a/preferences", {"channels": {"sms": False}}, format="json")
    email, suppressed = sorted(send(admin, "a", ["email", "sms"]), key=lambda m: m.channel)
    assert suppressed.status == Message.Status.SUPPRESSED
    messages = [email] + [send(admin, name)[0] for name in ("b", "c", "d")]
    now = timezone.now()
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(created=now - timedelta(seconds=2))
    Message.objects.filter(pk=messages[3].pk).update(expires_at=now - timedelta(seconds=1))
    deliver([m.pk for m in messages])
    sent = {m.pk: m.provider_message_id for m in Message.objects.filter(status="sent")}
    assert len(sent) == 3
    receipts.apply(tenant.pk, "email", [Receipt(sent[messages[0].pk], Message.Status.DELIVERED)])
    receipts.apply(tenant.pk, "email", [Receipt(sent[messages[1].pk], Message.Status.BOUNCED, "hard_bounce")])
    return provider


@pytest.mark.sqlite
@pytest.mark.django_db
def test_counts_rates_and_latencies_match_the_known_sends(member, known_sends):
    body = member.get(URL, {"group_by": "channel"}).json()

    [email] = [g for g in body["groups"] if g["key"] == "email"]
    assert email["counts"] | {} == {
        "accepted": 4, "suppressed": 0, "sent": 3, "delivered": 1, "read": 0, "failed": 0,
        "bounced": 1, "complained": 0, "expired": 1, "cancelled": 0,
    }  # fmt: skip
    assert email["success_rate"] == 0.75  # 3 sent of the 4 whose sending ended
    assert email["delivery_rate"] == round(1 / 3, 4)
    sent, delivered = email["latency_ms"]["sent"], email["latency_ms"]["delivered"]
    assert sent["count"] == 3 and delivered["count"] == 1
    # Two seconds and a little, read from a bucket √2 wide.
    assert 1400 <= sent["p50"] <= 4000 and sent["p50"] <= sent["p95"] <= 5700
    assert 1400 <= delivered["p50"] <= 5700
    [sms] = [g for g in body["groups"] if g["key"] == "sms"]
    assert sms["counts"]["accepted"] == 1 and sms["counts"]["suppressed"] == 1
    assert sms["success_rate"] is None and sms["latency_ms"]["sent"] == {"count": 0, "p50": None, "p95": None}
    assert body["total"]["counts"]["accepted"] == 5 and body["total"]["latency_ms"]["sent"]["count"] == 3


@pytest.mark.django_db
def test_each_grouping_splits_the_same_numbers(member, known_sends):
    def groups(by):
        response = member.get(URL, {"group_by": by})
        assert response.status_code == 200, response.content
        return {g["key"]: g for g in response.json()["groups"]}

    by_status = groups("status")
    assert {k: g["counts"][k] for k, g in by_status.items()} == {
        "accepted": 5, "suppressed": 1, "sent": 3, "delivered": 1, "bounced": 1, "expired": 1,
    }  # fmt: skip
    assert set(groups("category")) == {"alerts"}
    assert [g["counts"]["accepted"] for g in groups("day").values()] == [5]
    assert list(groups("day")) == [analytics.hour_of(timezone.now()).date().isoformat()]
    by_provider = groups("provider")
    assert by_provider["mailer"]["counts"]["sent"] == 3 and by_provider["mailer"]["latency_ms"]["sent"]["count"] == 3
    # Accepted, suppressed and expired before any provider was tried: no provider.
    assert by_provider[None]["counts"]["accepted"] == 5 and by_provider[None]["counts"]["expired"] == 1


@pytest.mark.django_db
def test_the_report_reads_the_aggregates_not_the_messages(member, known_sends):
    with CaptureQueriesContext(connection) as queries:
        assert member.get(URL, {"group_by": "day"}).status_code == 200

    assert not [q["sql"] for q in queries if '"notifications_message"' in q["sql"]]


@pytest.mark.django_db
def test_another_tenant_sees_none_of_it(outsider, known_sends):
    body = outsider.get(URL).json()

    assert body["groups"] == []
    assert set(body["total"]["counts"].values()) == {0}


@pytest.mark.django_db
def test_the_range_leaves_out_other_hours(member, known_sends):
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()

    assert member.get(URL, {"from": tomorrow, "to": tomorrow}).json()["groups"] == []
    assert member.get(URL, {"from": yesterday}).json()["total"]["counts"]["accepted"] == 5
    assert member.get(URL, {"to": yesterday}).json()["groups"] == []


@pytest.mark.django_db
def test_a_day_is_whole_and_a_date_time_is_exact(member):
    day = member.get(URL, {"from": "2026-12-01", "to": "2026-12-07"}).json()
    exact = member.get(URL, {"from": "2026-12-01T09:30:00", "to": "2026-12-01T12:00:00+01:00"}).json()

    assert (day["from"], day["to"]) == ("2026-12-01T00:00:00+00:00", "2026-12-08T00:00:00+00:00")
    assert (exact["from"], exact["to"]) == ("2026-12-01T09:30:00+00:00", "2026-12-01T12:00:00+01:00")


@pytest.mark.django_db
def test_the_report_adds_up_the_shards(member, outsider, tenant):
    """Each writer's connection raises its own shard's rows (alertflow/counters.py)."""
    hour = analytics.hour_of(timezone.now())
    for shard, n in ((1, 3), (6, 4)):
        DeliveryCount.objects.create(tenant=tenant, hour=hour, channel="email", status="sent", shard=shard, n=n)

    assert member.get(URL).json()["total"]["counts"]["sent"] == 7
    assert outsider.get(URL).json()["total"]["counts"]["sent"] == 0


@pytest.mark.django_db
def test_a_refused_send_counts_nothing(admin, tenant):
    RecipientFactory(tenant=tenant, external_id="a", email="a@example.com")
    Quota.objects.create(tenant=tenant, channel="email", monthly_limit=0)

    body = {"recipient": "a", "channels": ["email"], "content": CONTENT}
    assert admin.post("/api/v1/notifications", body, format="json").status_code == 429

    assert not DeliveryCount.objects.exists()


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"from": "yesterday"}, "invalid_from", "from"),
        ({"to": "2026-02-30"}, "invalid_to", "to"),
        ({"to": "2026-13-01T00:00:00Z"}, "invalid_to", "to"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "invalid_range", None),
        ({"from": "2026-12-02T10:00:00Z", "to": "2026-12-02T09:00:00+00:00"}, "invalid_range", None),
        ({"from": "2026-01-01", "to": "2026-12-01"}, "range_too_long", None),
        ({"to": "0001-01-02"}, "invalid_range", None),
        # An offset that moves a moment out of years 1..9999 in UTC, or a first whole hour past 9999.
        ({"from": "0001-01-01T00:30:00+01:00", "to": "0001-01-02"}, "invalid_range", None),
        ({"from": "9999-12-30", "to": "9999-12-31T23:59:59-01:00"}, "invalid_range", None),
        ({"from": "9999-12-31T23:30:00Z", "to": "9999-12-31T23:59:00Z"}, "invalid_range", None),
        ({"group_by": "hour"}, "invalid_group_by", "group_by"),
    ],
)
@pytest.mark.django_db
def test_bad_parameters_are_400_naming_them(member, params, code, param):
    response = member.get(URL, params)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    if param:
        assert error["details"]["param"] == param


def test_percentiles_come_from_the_buckets():
    assert analytics.bucket_of(5) == 0 and analytics.bucket_of(10) == 0 and analytics.bucket_of(11) == 1
    assert analytics.bucket_of(10**12) == analytics.BUCKETS - 1
    for ms in (12, 95, 2_000, 61_000, 3_600_000):
        lower, upper = analytics.bucket_bounds(analytics.bucket_of(ms))
        assert lower < ms <= upper and upper / lower <= 2**0.5 + 1e-9
    histogram = Counter({analytics.bucket_of(100): 90, analytics.bucket_of(5_000): 10})
    assert 70 < analytics.percentile(histogram, 0.5) <= 100
    assert 3_500 < analytics.percentile(histogram, 0.95) <= 5_700
    assert analytics.percentile({}, 0.5) is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_add_up(tenant):
    """Eight threads, each with its own connection and transactions, incrementing the same rows."""
    hour = analytics.hour_of(timezone.now())
    key = (tenant.pk, hour, "email", "alerts", "mailer")
    start = threading.Barrier(8)
    errors = []

    def writer():
        try:
            start.wait()
            for _ in range(25):
                from django.db import transaction

                with transaction.atomic():
                    analytics.add(Counter({(*key, "sent"): 1}), Counter({(*key, "sent", 7): 2}))
        except Exception as exc:  # reported below: a thread's exception would vanish
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    # Each connection raised its own shard's rows (alertflow/counters.py): the sums are whole.
    assert DeliveryCount.objects.filter(tenant=tenant, status="sent").aggregate(n=Sum("n"))["n"] == 200
    assert DeliveryLatency.objects.filter(tenant=tenant, stage="sent", bucket=7).aggregate(n=Sum("n"))["n"] == 400


@pytest.mark.sqlite
@pytest.mark.django_db
def test_the_worker_counts_its_batch_from_what_it_holds_without_reading_it_back(admin, tenant, smtp_server):
    CategoryFactory(tenant=tenant, key="alerts")
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="mailer")
    RecipientFactory(tenant=tenant, external_id="a", email="a@example.com")
    [message] = send(admin, "a")

    with CaptureQueriesContext(connection) as queries:
        assert deliver([message.pk]) == 1

    message_reads = [
        q["sql"] for q in queries if q["sql"].startswith("SELECT") and '"notifications_message"' in q["sql"]
    ]
    assert len(message_reads) == 1, message_reads  # the batch's own load: no read-back by the listener
    sent = DeliveryCount.objects.get(tenant=tenant, status="sent")
    assert (sent.channel, sent.category, sent.provider, sent.n) == ("email", "alerts", "mailer", 1)
    assert (
        DeliveryLatency.objects.filter(tenant=tenant, stage="sent", category="alerts", provider="mailer").count() == 1
    )
