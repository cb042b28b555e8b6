import pytest

from delivery import providers
from delivery.models import Provider

SMTP_PASSWORD = "smtp-pa55word-do-not-leak"
SENDGRID_KEY = "SG.sendgrid-api-key-do-not-leak"
TWILIO_TOKEN = "twilio-auth-token-do-not-leak"


def smtp_config(**overrides) -> dict:
    return {
        "host": "smtp.example.com",
        "use_tls": True,
        "username": "mailer",
        "password": SMTP_PASSWORD,
        "from_email": "alerts@example.com",
        **overrides,
    }


def twilio_config(**overrides) -> dict:
    return {"account_sid": "AC" + "0" * 32, "auth_token": TWILIO_TOKEN, "from_number": "+14155550100", **overrides}


def make_provider(tenant, channel="email", kind="smtp", name=None, config=None, **fields) -> Provider:
    """A saved provider with its config validated by its kind, as the API would store it."""
    from delivery.models import provider_class

    config = smtp_config() if config is None and kind == "smtp" else config or {}
    provider = Provider(tenant=tenant, channel=channel, kind=kind, name=name or f"{kind}-{channel}", **fields)
    provider.set_config(provider_class(channel, kind).validate_config(config))
    provider.save()
    return provider


@pytest.fixture(autouse=True)
def empty_provider_cache():
    """The per-process cache outlives a test; Redis (the version counters) is cleared by tests/conftest.py."""
    providers.clear_cache()
    yield
    providers.clear_cache()


@pytest.fixture
def console_defaults(settings):
    """The deployment defaults every test of the fallback expects, whatever the environment says."""
    settings.ALERTFLOW_DEFAULT_PROVIDERS = [
        {"channel": "email", "kind": "console", "config": {}},
        {"channel": "sms", "kind": "console", "config": {}},
    ]
