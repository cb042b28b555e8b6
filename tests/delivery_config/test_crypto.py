import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from delivery import crypto
from delivery.inbox_auth import inbox_secret, rotate_inbox_secret
from delivery.models import InboxSecret, Provider, WebhookEndpoint
from delivery.providers import reencrypt_secrets

from .conftest import SMTP_PASSWORD, make_provider

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
SECRETS = {"password": SMTP_PASSWORD, "service_account": {"private_key": "-----BEGIN PRIVATE KEY-----"}}


def test_round_trip(settings):
    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY]

    token = crypto.encrypt_json(SECRETS)

    assert SMTP_PASSWORD not in token
    assert crypto.decrypt_json(token) == SECRETS


def test_key_derived_from_secret_key_when_none_is_set(settings):
    settings.ALERTFLOW_ENCRYPTION_KEY = []
    token = crypto.encrypt_json(SECRETS)

    assert crypto.decrypt_json(token) == SECRETS
    settings.SECRET_KEY = "a-rotated-secret-key"
    with pytest.raises(crypto.SecretsUnreadable):
        crypto.decrypt_json(token)


def test_old_key_still_decrypts_when_the_new_one_is_listed_first(settings):
    settings.ALERTFLOW_ENCRYPTION_KEY = [OLD_KEY]
    old_token = crypto.encrypt_json(SECRETS)

    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]
    new_token = crypto.encrypt_json(SECRETS)

    assert crypto.decrypt_json(old_token) == SECRETS
    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY]  # the first key is the one that encrypts
    assert crypto.decrypt_json(new_token) == SECRETS
    with pytest.raises(crypto.SecretsUnreadable):
        crypto.decrypt_json(old_token)


def test_comma_separated_string_is_a_key_list(settings):
    settings.ALERTFLOW_ENCRYPTION_KEY = [OLD_KEY]
    token = crypto.encrypt_json(SECRETS)
    settings.ALERTFLOW_ENCRYPTION_KEY = f"{NEW_KEY}, {OLD_KEY}"

    assert crypto.decrypt_json(token) == SECRETS


@pytest.mark.parametrize("token", ["garbage", "gAAAAABtampered", "", "clé"])
def test_undecryptable_ciphertext_is_a_clear_error(settings, token):
    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY]

    with pytest.raises(crypto.SecretsUnreadable, match="cannot be decrypted with the configured keys"):
        crypto.decrypt_json(token)


def test_tampered_ciphertext_is_refused(settings):
    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY]
    token = crypto.encrypt_json(SECRETS)
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]

    with pytest.raises(crypto.SecretsUnreadable):
        crypto.decrypt_json(tampered)


def test_malformed_key_is_a_configuration_error_that_does_not_echo_it(settings):
    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY, "not-a-fernet-key-but-a-secret"]

    with pytest.raises(ImproperlyConfigured, match="key 2 is not a Fernet key") as raised:
        crypto.encrypt_json(SECRETS)
    assert "not-a-fernet-key-but-a-secret" not in str(raised.value)


@pytest.mark.django_db
def test_reencrypt_moves_stored_secrets_to_the_first_key(settings, tenant):
    settings.ALERTFLOW_ENCRYPTION_KEY = [OLD_KEY]
    provider = make_provider(tenant, name="main")
    make_provider(tenant, kind="console", name="no-secrets", config={})

    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]
    assert reencrypt_secrets() == 1

    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY]
    assert Provider.objects.get(pk=provider.pk).full_config()["password"] == SMTP_PASSWORD


@pytest.mark.django_db
def test_reencrypt_moves_webhook_secrets_to_the_first_key_too(settings, tenant):
    settings.ALERTFLOW_ENCRYPTION_KEY = [OLD_KEY]
    endpoint = WebhookEndpoint(tenant=tenant, url="https://example.com/hooks", events=["message.sent"])
    endpoint.set_secret("whsec_kept")
    endpoint.save()

    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]
    assert reencrypt_secrets() == 1

    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY]
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).signing_secrets() == ["whsec_kept"]


@pytest.mark.django_db
def test_reencrypt_moves_inbox_secrets_to_the_first_key_too(settings, tenant):
    # It skipped them: after the old key was dropped, every inbox HMAC of the tenant stopped verifying.
    settings.ALERTFLOW_ENCRYPTION_KEY = [OLD_KEY]
    secret = rotate_inbox_secret(tenant)

    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]
    assert reencrypt_secrets() == 1

    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY]
    assert inbox_secret(tenant) == secret


@pytest.mark.django_db
def test_reencrypt_command_reports_the_count(settings, tenant, capsys):
    settings.ALERTFLOW_ENCRYPTION_KEY = [OLD_KEY]
    make_provider(tenant, name="main")
    rotate_inbox_secret(tenant)
    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]

    call_command("reencrypt_secrets")

    assert "Re-encrypted 2 stored secret(s)" in capsys.readouterr().out
    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY]
    assert Provider.objects.get(tenant=tenant, name="main").full_config()["password"] == SMTP_PASSWORD


@pytest.mark.django_db
def test_reencrypt_command_names_the_row_no_key_opens_and_fails(settings, tenant):
    settings.ALERTFLOW_ENCRYPTION_KEY = [OLD_KEY]
    rotate_inbox_secret(tenant)
    before = InboxSecret.objects.get(tenant=tenant).secret

    settings.ALERTFLOW_ENCRYPTION_KEY = [NEW_KEY]
    with pytest.raises(CommandError, match=f"inbox secret {tenant.pk}"):
        call_command("reencrypt_secrets")
    assert InboxSecret.objects.get(tenant=tenant).secret == before
