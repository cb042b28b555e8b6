"""Pytest fixtures for the provider fakes: each starts on 127.0.0.1 and stops after the test.

Import them into a conftest: `from tests.fakes.fixtures import *  # noqa: F403`.

127.0.0.1 is what the outbound guard refuses by default, so every fake turns
`ALERTFLOW_ALLOW_PRIVATE_NETWORKS` on for its test (`private_networks`); a test proving a
refusal next to a fake turns it off again.
"""

import pytest

from .apns import ApnsFake
from .esp import EspFake
from .fcm import FcmFake
from .smtp import SmtpFake
from .twilio import TwilioFake
from .webhooks import WebhookReceiver
from .webpush import WebPushFake

__all__ = [
    "apns_fake", "fcm_fake", "private_networks", "sendgrid_fake", "smtp_server", "twilio_fake", "webhook_receiver",
    "webpush_fake",
]  # fmt: skip


@pytest.fixture
def private_networks(settings):
    """Let the outbound guard allow loopback and private addresses, where the fakes listen."""
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture
def smtp_server(private_networks):
    fake = SmtpFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def twilio_fake(settings, private_networks):
    """A Twilio API; ALERTFLOW_TWILIO_BASE_URL points the real SDK at it."""
    fake = TwilioFake().start()
    settings.ALERTFLOW_TWILIO_BASE_URL = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def fcm_fake(settings, private_networks):
    """FCM v1 and its OAuth endpoint; ALERTFLOW_FCM_BASE_URL points firebase-admin at it."""
    fake = FcmFake().start()
    settings.ALERTFLOW_FCM_BASE_URL = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def apns_fake(private_networks):
    fake = ApnsFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def webpush_fake(private_networks):
    fake = WebPushFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def sendgrid_fake(private_networks):
    """SendGrid's send API (and Mailgun's, Postmark's, SES v2's: `fake.api_url(kind)`)."""
    fake = EspFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def webhook_receiver(private_networks, settings):
    """A tenant's webhook endpoint on 127.0.0.1, in plain http, as in development."""
    settings.ALERTFLOW_WEBHOOK_ALLOW_HTTP = True
    fake = WebhookReceiver().start()
    yield fake
    fake.release()
    fake.stop()
