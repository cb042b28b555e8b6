"""No repr shows a provider secret: specs, provider instances, configs, decrypted secrets."""

import pytest

from delivery import crypto
from delivery.providers import providers_for
from tests.fakes.apns import ApnsFake
from tests.fakes.fcm import FcmFake
from tests.fakes.webpush import vapid_keypair

from .conftest import SENDGRID_KEY, SMTP_PASSWORD, TWILIO_TOKEN, make_provider, smtp_config, twilio_config

pytestmark = pytest.mark.django_db


def _apns():
    fake = ApnsFake().start()
    config = fake.config(api_url="https://api.example.com")
    fake.stop()
    return config, config["private_key"]


def _fcm():
    fake = FcmFake().start()
    account = {**fake.service_account, "token_uri": "https://oauth2.example.com/token"}
    fake.stop()
    return {"service_account": account}, account["private_key"]


def _webpush():
    key = vapid_keypair()[0]
    return {"vapid_private_key": key, "vapid_subject": "mailto:ops@example.com"}, key


KINDS = {
    "smtp": ("email", lambda: (smtp_config(), SMTP_PASSWORD)),
    "sendgrid": ("email", lambda: ({"api_key": SENDGRID_KEY, "from_email": "a@example.com"}, SENDGRID_KEY)),
    "amazon_ses": ("email", lambda: ({"access_key_id": "AKIAEXAMPLE", "secret_access_key": "ses-secret-do-not-leak",
                                      "region": "eu-west-1", "from_email": "a@example.com"}, "ses-secret-do-not-leak")),
    "twilio": ("sms", lambda: (twilio_config(), TWILIO_TOKEN)),
    "apns": ("push", _apns),
    "fcm": ("push", _fcm),
    "webpush": ("push", _webpush),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_no_repr_shows_a_secret(tenant, kind):
    channel, make = KINDS[kind]
    config, secret = make()
    row = make_provider(tenant, channel=channel, kind=kind, config=config)
    [spec] = providers_for(tenant.pk, channel)
    provider = spec.provider()
    # A repr escapes a PEM key's newlines: look for its longest line, which no repr may show either.
    fragment = max(secret.split(), key=len)
    assert fragment in str(crypto.strings_in(dict(provider.config)))  # there, in clear, for the SDK

    shown = [
        repr(spec), str(spec), f"{spec!r}",
        repr(provider), str(provider),
        repr(provider.config), str(provider.config), f"{provider.config}",
        repr(row.full_config()), repr(row.decrypted_secrets()),
        repr(spec.config), repr([spec]), repr({"spec": spec}),
    ]  # fmt: skip
    for text in shown:
        assert fragment not in text
    assert kind in repr(spec) and kind in repr(provider)
