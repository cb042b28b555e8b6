"""A suppressed address is not sent to: the fan-out marks its message `suppressed` with the
reason, and the worker checks again just before the provider call."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from delivery import pipeline
from notifications import services
from notifications.models import Message, Notification
from preferences import suppressions
from preferences.models import Suppression
from tests.factories import CategoryFactory, DeviceFactory, RecipientFactory

from .conftest import accept, add_provider, smtp_config

# Also run on SQLite, the database of `make run` (make test's second pass): the check and the
# INSERT ... ON CONFLICT of `suppress` are written for both.
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


def suppress(tenant, channel, address, reason="manual", category=None):
    return suppressions.suppress(tenant.pk, channel, [address], reason, category.pk if category else None)


def suppression_queries(queries) -> int:
    return sum('"preferences_suppression"' in q["sql"] for q in queries)


def test_a_hard_bounced_address_is_suppressed_even_for_a_critical_category(admin, tenant, ada):
    security = CategoryFactory(tenant=tenant, key="security", critical=True, channels=["email", "sms"])
    suppress(tenant, "email", "ADA@example.com".lower(), "hard_bounce")

    email, sms = accept(admin, ["email", "sms"], category=security.key)

    assert (email.status, email.reason) == ("suppressed", "suppressed:hard_bounce")
    assert sms.status == "queued"


def test_a_send_whose_every_address_is_suppressed_is_refused_with_the_reasons(admin, tenant, ada):
    suppress(tenant, "email", "ada@example.com", "complaint")

    response = admin.post("/api/v1/notifications", {"recipient": "ada", "channels": ["email"],
                          "content": {"email": {"subject": "s", "text": "t"}}}, format="json")  # fmt: skip

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "address_suppressed"
    assert error["details"]["channels"] == {"email": "suppressed:complaint"}
    assert not Message.objects.exists()


def test_a_category_suppression_blocks_only_that_category(admin, tenant, ada):
    promo = CategoryFactory(tenant=tenant, key="promo", channels=["email", "sms"])
    billing = CategoryFactory(tenant=tenant, key="billing", channels=["email", "sms"])
    suppress(tenant, "email", "ada@example.com", category=promo)

    promo_email, _ = accept(admin, ["email", "sms"], category=promo.key)
    billing_email, _ = accept(admin, ["email", "sms"], category=billing.key)

    assert (promo_email.status, promo_email.reason) == ("suppressed", "suppressed:manual")
    assert billing_email.status == "queued"


def test_a_suppression_on_another_channel_or_tenant_blocks_nothing(admin, tenant, ada, outsider_tenant):
    suppress(tenant, "sms", "+14155550000")  # not ada's number
    suppress(outsider_tenant, "email", "ada@example.com", "hard_bounce")

    email, sms = accept(admin, ["email", "sms"])

    assert (email.status, sms.status) == ("queued", "queued")


def test_a_fan_out_chunk_checks_its_addresses_in_one_query(admin, tenant):
    for n in range(30):
        RecipientFactory(tenant=tenant, external_id=f"u{n}", phone=f"+1415555{n:04d}")
    suppress(tenant, "email", "u3@example.com", "hard_bounce")
    suppress(tenant, "sms", "+14155550007", "sms_stop")
    response = admin.post(
        "/api/v1/notifications",
        {"recipients": [f"u{n}" for n in range(30)], "channels": ["email", "sms"],
         "content": {"email": {"subject": "s", "text": "t"}, "sms": {"text": "t"}}},
        format="json",
    )  # fmt: skip
    assert response.status_code == 202
    notification = Notification.objects.get(pk=response.json()["id"])

    with CaptureQueriesContext(connection) as queries:
        services.fan_out(notification.pk)

    assert suppression_queries(queries) == 1
    suppressed = Message.objects.filter(notification=notification, status="suppressed")
    assert sorted(suppressed.values_list("recipient__external_id", "channel", "reason")) == [
        ("u3", "email", "suppressed:hard_bounce"),
        ("u7", "sms", "suppressed:sms_stop"),
    ]
    assert Message.objects.filter(notification=notification, status="queued").count() == 58


def test_an_address_suppressed_after_the_fan_out_is_not_sent(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"])
    assert message.status == "queued"
    suppress(tenant, "email", "ada@example.com", "complaint")

    assert pipeline.deliver([message.id]) == 0

    assert smtp_server.messages == []
    message = reload(message)
    assert (message.status, message.reason, message.attempts) == ("suppressed", "suppressed:complaint", 0)
    assert not message.delivery_attempts.exists()


def test_a_worker_batch_checks_its_addresses_in_one_query(admin, tenant, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    ids = []
    for n in range(6):
        RecipientFactory(tenant=tenant, external_id=f"u{n}")
        ids += [m.id for m in accept(admin, ["email"], recipient=f"u{n}")]
    suppress(tenant, "email", "u2@example.com", "hard_bounce")
    suppress(tenant, "email", "u4@example.com", "complaint")

    with CaptureQueriesContext(connection) as queries:
        assert pipeline.deliver(ids) == 4

    assert suppression_queries(queries) == 1
    assert sorted(rcpt for m in smtp_server.messages for rcpt in m.rcpt_tos) == [
        f"u{n}@example.com" for n in (0, 1, 3, 5)
    ]
    assert sorted(Message.objects.filter(status="suppressed").values_list("reason", flat=True)) == [
        "suppressed:complaint",
        "suppressed:hard_bounce",
    ]


def test_a_suppressed_push_token_is_skipped_and_the_other_devices_still_get_it(admin, tenant, ada, fcm_fake):
    add_provider(tenant, "push", "fcm", {"service_account": fcm_fake.service_account})
    DeviceFactory(recipient=ada, platform="fcm", token="blocked-token")
    DeviceFactory(recipient=ada, platform="fcm", token="good-token")
    [message] = accept(admin, ["push"])
    suppress(tenant, "push", "blocked-token")

    pipeline.deliver([message.id])

    assert reload(message).status == "sent"
    assert [request.json()["message"]["token"] for request in fcm_fake.sent] == ["good-token"]


def test_a_push_whose_every_token_is_suppressed_is_suppressed_at_accept(admin, tenant, ada):
    DeviceFactory(recipient=ada, platform="fcm", token="only-token")
    suppress(tenant, "push", "only-token")

    _email, push = accept(admin, ["email", "push"])

    assert (push.status, push.reason) == ("suppressed", "suppressed:manual")


def test_suppress_announces_only_the_rows_it_created(tenant):
    announced = []

    def receiver(sender, tenant_id, suppressions, **kwargs):
        announced.append((tenant_id, sorted(s.address for s in suppressions)))

    suppressions.suppression_created.connect(receiver)
    try:
        suppressions.suppress(tenant.pk, "email", ["a@example.com"], "manual")
        added = suppressions.suppress(tenant.pk, "email", ["a@example.com", "b@example.com"], "import")
    finally:
        suppressions.suppression_created.disconnect(receiver)

    assert (len(added.created), added.existing) == (1, 1)
    assert announced == [(tenant.pk, ["a@example.com"]), (tenant.pk, ["b@example.com"])]
    assert Suppression.objects.get(address="a@example.com").reason == "manual"


def test_an_apns_token_suppressed_in_upper_case_blocks_its_device(admin, tenant, ada):
    # APNs tokens are hex, upper or lower case by client library; devices store them lower-cased
    # (DeviceSerializer), so a suppression of the same token must match whatever its case.
    token = "AB12" * 16
    registered = admin.post("/api/v1/recipients/ada/devices", {"platform": "apns", "token": token}, format="json")
    assert registered.status_code == 201, registered.content
    assert admin.post("/api/v1/suppressions", {"channel": "push", "address": token}, format="json").status_code == 201

    _email, push = accept(admin, ["email", "push"])

    assert (push.status, push.reason) == ("suppressed", "suppressed:manual")
