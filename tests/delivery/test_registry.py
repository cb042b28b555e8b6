import pytest

from config import settings as settings_module
from delivery.channels import PROVIDERS, default_providers, kinds, provider_class
from delivery.channels.base import Outgoing, Provider, ProviderError, Sent, parse_retry_after


def test_every_channel_kind_is_registered_under_its_own_channel():
    assert kinds("email") == ["amazon_ses", "console", "mailgun", "postmark", "sendgrid", "smtp"]
    assert kinds("sms") == ["console", "twilio"]
    assert kinds("push") == ["apns", "console", "fcm", "webpush"]
    for channel, classes in PROVIDERS.items():
        for kind, cls in classes.items():
            assert (cls.channel, cls.kind) == (channel, kind)


def test_console_kind_resolves_per_channel():
    assert provider_class("email", "console").channel == "email"
    assert provider_class("sms", "console").channel == "sms"
    assert provider_class("push", "console").platforms == ("fcm", "apns", "webpush")


def test_unknown_kind_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"kind: unknown sms provider 'nexmo' \(one of console, twilio\)"):
        provider_class("sms", "nexmo")
    with pytest.raises(ValueError, match="channel: no providers for 'inapp'"):
        provider_class("inapp", "console")


def test_push_kinds_declare_the_platforms_they_serve():
    assert provider_class("push", "fcm").platforms == ("fcm",)
    assert provider_class("push", "apns").platforms == ("apns",)
    assert provider_class("push", "webpush").platforms == ("webpush",)


def test_secret_fields_name_config_keys_of_their_kind():
    assert provider_class("email", "smtp").secret_fields == ("password",)
    assert provider_class("email", "sendgrid").secret_fields == ("api_key", "webhook_secret")
    assert provider_class("email", "amazon_ses").secret_fields == ("secret_access_key", "webhook_secret")
    assert provider_class("email", "mailgun").secret_fields == ("api_key", "webhook_secret", "webhook_signing_key")
    assert provider_class("sms", "twilio").secret_fields == ("auth_token",)
    assert provider_class("push", "fcm").secret_fields == ("service_account",)
    assert provider_class("push", "apns").secret_fields == ("private_key",)
    assert provider_class("push", "webpush").secret_fields == ("vapid_private_key",)


def test_unknown_config_keys_are_refused():
    with pytest.raises(ValueError, match=r"^hots: unknown setting"):
        provider_class("email", "smtp").validate_config({"hots": "x", "from_email": "a@example.com"})


def test_provider_is_a_context_manager_that_opens_and_closes():
    calls = []

    class Recording(Provider):
        channel, kind = "sms", "recording"

        def open(self):
            calls.append("open")

        def close(self):
            calls.append("close")

        def send(self, out):
            calls.append(out.to)
            return Sent("id-1")

    with Recording({}) as provider:
        assert provider.send(Outgoing("m1", "+15550001111", {"text": "hi"})) == Sent("id-1")
    assert calls == ["open", "+15550001111", "close"]


def test_provider_error_carries_its_classification():
    error = ProviderError("slow down", permanent=False, code="rate_limited", retry_after=3.0)
    assert (error.transient, error.permanent, error.code, error.retry_after, error.deactivate_device) == (
        True,
        False,
        "rate_limited",
        3.0,
        False,
    )
    assert str(error) == "slow down"


def test_retry_after_reads_seconds_and_http_dates():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now


def test_without_configuration_every_channel_defaults_to_its_console_sink(settings):
    settings.ALERTFLOW_DEFAULT_PROVIDERS = [
        settings_module._default_email_provider(),
        settings_module._default_sms_provider(),
        settings_module._default_push_provider(),
    ]
    assert [(p["channel"], p["kind"]) for p in default_providers()] == [
        ("email", "console"),
        ("sms", "console"),
        ("push", "console"),
    ]


@pytest.fixture
def clean_env(monkeypatch):
    for name in [
        "EMAIL_PROVIDER", "EMAIL_FROM", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_USE_TLS",
        "GMAIL_ADDRESS", "GMAIL_APP_PASSWORD", "SENDGRID_API_KEY", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
        "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID", "FCM_SERVICE_ACCOUNT_FILE", "FCM_SERVICE_ACCOUNT_JSON",
    ]:  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_gmail_environment_means_smtp_gmail_with_starttls(clean_env, settings):
    clean_env.setenv("EMAIL_PROVIDER", "gmail")
    clean_env.setenv("GMAIL_ADDRESS", "ops@gmail.com")
    clean_env.setenv("GMAIL_APP_PASSWORD", "abcd efgh ijkl mnop")
    settings.ALERTFLOW_DEFAULT_PROVIDERS = [settings_module._default_email_provider()]
    [email] = default_providers()
    assert email["kind"] == "smtp"
    assert {k: email["config"][k] for k in ("host", "port", "use_tls", "username", "from_email")} == {
        "host": "smtp.gmail.com",
        "port": 587,
        "use_tls": True,
        "username": "ops@gmail.com",
        "from_email": "ops@gmail.com",
    }


def test_smtp_and_twilio_environment_become_default_providers(clean_env, settings):
    clean_env.setenv("SMTP_HOST", "mail.example.com")
    clean_env.setenv("SMTP_PORT", "2525")
    clean_env.setenv("EMAIL_FROM", "Alerts <alerts@example.com>")
    clean_env.setenv("TWILIO_ACCOUNT_SID", "AC" + "a" * 32)
    clean_env.setenv("TWILIO_AUTH_TOKEN", "secret")
    clean_env.setenv("TWILIO_FROM_NUMBER", "+14155550100")
    settings.ALERTFLOW_DEFAULT_PROVIDERS = [
        settings_module._default_email_provider(),
        settings_module._default_sms_provider(),
    ]
    email, sms = default_providers()
    assert (email["kind"], email["config"]["host"], email["config"]["port"]) == ("smtp", "mail.example.com", 2525)
    assert (sms["kind"], sms["config"]["from_number"]) == ("twilio", "+14155550100")


def test_sendgrid_environment_requires_a_sender(clean_env):
    from django.core.exceptions import ImproperlyConfigured

    clean_env.setenv("EMAIL_PROVIDER", "sendgrid")
    clean_env.setenv("SENDGRID_API_KEY", "SG.key")
    with pytest.raises(ImproperlyConfigured, match="EMAIL_FROM"):
        settings_module._default_email_provider()


def test_fcm_service_account_file_becomes_the_push_default(clean_env, settings, tmp_path, fcm_fake):
    import json

    path = tmp_path / "sa.json"
    path.write_text(json.dumps(fcm_fake.service_account))
    clean_env.setenv("FCM_SERVICE_ACCOUNT_FILE", str(path))
    settings.ALERTFLOW_DEFAULT_PROVIDERS = [settings_module._default_push_provider()]
    [push] = default_providers()
    assert push["kind"] == "fcm"
    assert push["config"]["service_account"]["project_id"] == "alertflow-test"


def test_a_bad_default_provider_names_its_entry(settings):
    settings.ALERTFLOW_DEFAULT_PROVIDERS = [{"channel": "email", "kind": "smtp", "config": {"host": "x"}}]
    with pytest.raises(ValueError, match=r"ALERTFLOW_DEFAULT_PROVIDERS\[0\]: from_email: required"):
        default_providers()
