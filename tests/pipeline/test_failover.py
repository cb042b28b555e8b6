"""Whose fault a failed send is decides what happens next (DESIGN section 3, step 5).

The provider's fault (credentials, account, configuration, rate, outage): the next provider
is tried at once, the breaker counts it, and with no provider left the message is retried
later. The address's or the content's fault: the message stops, and no breaker counts it.
"""

import pytest

from delivery import guards, pipeline
from notifications.models import Message

from .conftest import accept, add_provider, smtp_config

pytestmark = pytest.mark.django_db


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


def twilio(tenant, fake, *, auth_token=None, **extra):
    config = {
        "account_sid": fake.account_sid,
        "auth_token": auth_token or fake.auth_token,
        "from_number": "+15005550006",
    }
    return add_provider(tenant, "sms", "twilio", config, **extra)


def test_revoked_smtp_login_on_the_primary_fails_over_to_the_backup(admin, tenant, ada, smtp_server, settings):
    settings.ALERTFLOW_BREAKER_FAILURES = 1
    smtp_server.require_login("alertflow", "current-password")
    revoked = {**smtp_config(smtp_server), "username": "alertflow", "password": "revoked-password"}
    primary = add_provider(tenant, "email", "smtp", revoked, name="primary", priority=0)
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="backup", priority=1)
    [message] = accept(admin, ["email"])

    assert pipeline.deliver([message.id]) == 1

    message = reload(message)
    assert (message.status, message.provider) == ("sent", "backup")
    attempts = list(message.delivery_attempts.values_list("provider", "outcome"))
    assert attempts == [("primary", "permanent"), ("backup", "sent")]
    assert "535" in message.delivery_attempts.first().error
    assert guards.breaker_state(str(primary.id)) == "open"  # counted against the provider


def test_revoked_twilio_token_on_the_primary_fails_over_to_the_backup(admin, tenant, ada, twilio_fake):
    twilio(tenant, twilio_fake, auth_token="revoked", name="primary", priority=0)
    twilio(tenant, twilio_fake, name="backup", priority=1)
    [message] = accept(admin, ["sms"])

    assert pipeline.deliver([message.id]) == 1

    message = reload(message)
    assert (message.status, message.provider) == ("sent", "backup")
    assert list(message.delivery_attempts.values_list("provider", "outcome")) == [
        ("primary", "permanent"),
        ("backup", "sent"),
    ]


def test_a_provider_fault_with_no_provider_left_is_retried_not_dead_lettered(admin, tenant, ada, twilio_fake):
    twilio(tenant, twilio_fake, auth_token="revoked")
    [message] = accept(admin, ["sms"])

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.reason) == ("retrying", "transient_failure")
    assert message.next_attempt is not None
    assert message.error.startswith("auth:")


def test_an_address_fault_stops_without_trying_the_backup_or_counting(admin, tenant, ada, twilio_fake, settings):
    settings.ALERTFLOW_BREAKER_FAILURES = 1
    primary = twilio(tenant, twilio_fake, name="primary", priority=0)
    twilio(tenant, twilio_fake, name="backup", priority=1)
    twilio_fake.fail_next(400, 21211, "The 'To' number is not a valid phone number")
    [message] = accept(admin, ["sms"])

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.reason) == ("failed", "permanent_failure")
    assert list(message.delivery_attempts.values_list("provider", flat=True)) == ["primary"]
    assert guards.breaker_state(str(primary.id)) == "closed"


def test_a_content_fault_stops_without_trying_the_backup(admin, tenant, ada, smtp_server):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="primary", priority=0)
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server), name="backup", priority=1)
    smtp_server.reply_next("554 5.7.1 Message rejected as spam")
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])

    message = reload(message)
    assert message.status == "failed"
    assert message.delivery_attempts.count() == 1
    assert smtp_server.messages == []


def test_unreadable_provider_secrets_wait_instead_of_dead_lettering(admin, tenant, ada, smtp_server, settings):
    login = {**smtp_config(smtp_server), "username": "alertflow", "password": "secret"}
    add_provider(tenant, "email", "smtp", login)
    settings.SECRET_KEY = "a-rotated-secret-key"  # the deployment lost the key its secrets need
    [message] = accept(admin, ["email"])

    pipeline.deliver([message.id])

    message = reload(message)
    assert (message.status, message.reason, message.attempts) == ("retrying", "providers_unavailable", 0)
    assert message.error.startswith("provider_config_unreadable")
