"""Claim, render, send through the real SDKs against local fakes, record, settle."""

from datetime import timedelta

import pytest
from django.utils import timezone

from delivery import pipeline, timers
from delivery.channels import BUILTIN, ProviderError
from delivery.channels.base import BuiltinDelivery
from notifications.models import DeliveryAttempt, Message
from tests.factories import DeviceFactory, RecipientFactory

from .conftest import accept, add_provider, smtp_config

# Also run on SQLite, the database of `make run` (make test's second pass).
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def twilio_account(tenant, fake):
    config = {"account_sid": fake.account_sid, "auth_token": fake.auth_token, "from_number": "+15005550006"}
    return add_provider(tenant, "sms", "twilio", config)


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


def test_email_is_rendered_sent_through_smtp_and_recorded(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="main-smtp")
    [message] = accept(admin, ["email"])

    assert pipeline.deliver([message.id]) == 1

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ada@example.com"]
    assert received.message["Subject"] == "Hello Ada"
    assert "Code 4711" in received.message.get_body(("plain",)).get_content()
    message = reload(message)
    assert (message.status, message.provider, message.attempts) == ("sent", "main-smtp", 1)
    assert message.provider_message_id == received.message["Message-ID"]
    assert message.rendered["subject"] == "Hello Ada"
    [attempt] = message.delivery_attempts.all()
    assert (attempt.outcome, attempt.provider) == ("sent", "main-smtp")


def test_a_duplicate_task_sends_nothing(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"])

    assert pipeline.deliver([message.id]) == 1
    assert pipeline.deliver([message.id]) == 0

    assert len(smtp_server.messages) == 1
    assert DeliveryAttempt.objects.count() == 1


def test_a_batch_reuses_one_smtp_connection(admin, tenant, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    ids = []
    for n in range(5):
        RecipientFactory(tenant=tenant, external_id=f"u{n}")
        ids += [m.id for m in accept(admin, ["email"], recipient=f"u{n}")]

    assert pipeline.deliver(ids) == 5

    assert len(smtp_server.messages) == 5
    assert smtp_server.connections == 1
    assert Message.objects.filter(status="sent").count() == 5


def test_transient_failure_schedules_a_retry_that_then_succeeds(admin, tenant, ada, smtp_server, settings):
    settings.ALERTFLOW_RETRY_BASE_SECONDS = 30
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    smtp_server.reply_next("451 4.3.0 Try again later")
    [message] = accept(admin, ["email"])
    before = timezone.now()

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.reason) == ("retrying", "transient_failure")
    assert before <= message.next_attempt <= before + timedelta(seconds=31)
    assert "451" in message.error
    assert timers.enqueue_due(now=message.next_attempt + timedelta(seconds=1)) == 1
    assert reload(message).status == "queued"
    assert pipeline.deliver([message.id]) == 1
    message = reload(message)
    assert (message.status, message.attempts) == ("sent", 2)
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == ["transient", "sent"]


def test_permanent_failure_dead_letters_the_message(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    smtp_server.refuse_recipient("ada@example.com", "550 5.1.1 No such user")
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.reason) == ("failed", "permanent_failure")
    assert "550" in message.error
    assert message.next_attempt is None
    assert message.failed is not None


def test_retries_stop_when_the_attempt_budget_is_spent(admin, tenant, ada, smtp_server, settings):
    settings.ALERTFLOW_MAX_ATTEMPTS = 2
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    smtp_server.reply_next("451 4.3.0 Try again later", times=2)
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])
    Message.objects.filter(pk=message.pk).update(status="queued")
    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.reason, message.attempts) == ("failed", "retries_exhausted", 2)


def test_transient_failure_fails_over_to_the_next_provider(admin, tenant, ada, smtp_server):
    down = add_provider(tenant, "email", "smtp", {**smtp_config(smtp_server), "port": 1}, name="down", priority=0)
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="backup", priority=1)
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.provider) == ("sent", "backup")
    assert list(message.delivery_attempts.values_list("provider", "outcome")) == [
        (down.name, "transient"),
        ("backup", "sent"),
    ]
    assert len(smtp_server.messages) == 1


def test_sms_goes_through_the_twilio_sdk(admin, tenant, ada, twilio_fake):
    twilio_account(tenant, twilio_fake)
    [message] = accept(admin, ["sms"])

    pipeline.deliver([message.id])

    [request] = twilio_fake.sent
    assert request.form()["To"] == "+14155552671"
    assert request.form()["Body"] == "Code 4711"
    message = reload(message)
    assert message.status == "sent", message.error
    assert message.provider_message_id.startswith("SM")


def test_invalid_number_from_twilio_is_permanent(admin, tenant, ada, twilio_fake):
    twilio_account(tenant, twilio_fake)
    twilio_fake.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
    [message] = accept(admin, ["sms"])

    pipeline.deliver([message.id])

    assert reload(message).status == "failed"


def test_push_reaches_every_active_device_and_drops_unregistered_ones(admin, tenant, ada, fcm_fake):
    add_provider(tenant, "push", "fcm", {"service_account": fcm_fake.service_account})
    dead = DeviceFactory(recipient=ada, platform="fcm", token="dead-token")
    good = DeviceFactory(recipient=ada, platform="fcm", token="good-token")
    # Devices are sent to in the order they registered: the first send is the dead token's.
    fcm_fake.fail_send(404, "UNREGISTERED", "Requested entity was not found.")
    [message] = accept(admin, ["push"])

    pipeline.deliver([message.id])

    assert reload(message).status == "sent"
    good.refresh_from_db()
    dead.refresh_from_db()
    assert good.active
    assert not dead.active


def test_inapp_is_sent_when_stored_with_its_rendered_content(admin, ada):
    [message] = accept(admin, ["inapp"])

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.provider) == ("sent", "inbox")
    assert message.rendered["title"] == "Hi"
    assert message.rendered["body"] == "Code 4711"


def test_a_failed_built_in_delivery_is_retried_not_lost(admin, ada, monkeypatch):
    class Unreachable(BuiltinDelivery):
        channel, name = "inapp", "inbox"

        def send(self, out):
            raise ProviderError("inbox store unavailable", permanent=False, code="unavailable", retry_after=30)

    monkeypatch.setitem(BUILTIN, "inapp", Unreachable())
    [message] = accept(admin, ["inapp"])

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.provider) == ("retrying", "inbox")
    assert message.error == "unavailable: inbox store unavailable"
    assert message.next_attempt >= timezone.now() + timedelta(seconds=29)


def test_without_tenant_providers_the_console_sinks_are_used(admin, ada, tmp_path):
    messages = accept(admin, ["email", "sms"])

    pipeline.deliver([m.id for m in messages])

    assert Message.objects.filter(status="sent").count() == 2
    assert len(list((tmp_path / "sinks" / "email").glob("*.eml"))) == 1
    assert "Code 4711" in (tmp_path / "sinks" / "sms.jsonl").read_text()


def test_a_recipient_without_address_at_send_time_fails_permanently(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    [message] = accept(admin, ["email"])
    ada.email = ""
    ada.save()

    pipeline.deliver([message.id])

    message = reload(message)
    assert message.status == "failed"
    assert message.error.startswith("no_address")


def test_a_push_batch_reads_its_devices_once(admin, tenant, fcm_fake):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    add_provider(tenant, "push", "fcm", {"service_account": fcm_fake.service_account})
    ids = []
    for n in range(4):
        recipient = RecipientFactory(tenant=tenant, external_id=f"p{n}")
        DeviceFactory(recipient=recipient, platform="fcm", token=f"token-{n}")
        ids += [m.id for m in accept(admin, ["push"], recipient=f"p{n}")]

    with CaptureQueriesContext(connection) as queries:
        assert pipeline.deliver(ids) == 4

    device_reads = [q for q in queries.captured_queries if 'FROM "preferences_device"' in q["sql"]]
    assert len(device_reads) == 1
    assert len(fcm_fake.sent) == 4
