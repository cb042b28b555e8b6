import pytest

from delivery import providers
from delivery.crypto import SecretsUnreadable
from delivery.models import Provider
from delivery.providers import ProviderSpec, providers_for

from .conftest import SMTP_PASSWORD, make_provider, twilio_config

pytestmark = pytest.mark.django_db


def test_returns_enabled_providers_in_priority_order_with_secrets(tenant, outsider_tenant):
    backup = make_provider(tenant, name="backup", priority=20)
    main = make_provider(tenant, name="main", priority=10)
    make_provider(tenant, name="off", priority=0, enabled=False)
    make_provider(tenant, channel="sms", kind="twilio", name="twilio", config=twilio_config())
    make_provider(outsider_tenant, name="theirs", priority=0)

    specs = providers_for(tenant.pk, "email")

    assert [spec.id for spec in specs] == [str(main.pk), str(backup.pk)]
    assert specs[0] == ProviderSpec(
        id=str(main.pk), channel="email", kind="smtp", name="main", config=main.full_config()
    )
    assert specs[0].config["password"] == SMTP_PASSWORD


def test_falls_back_to_deployment_defaults(tenant, console_defaults):
    make_provider(tenant, channel="sms", kind="twilio", name="twilio", config=twilio_config())

    specs = providers_for(tenant.pk, "email")

    assert [(spec.id, spec.kind, spec.name) for spec in specs] == [("default:email:console", "console", "console")]
    assert specs[0].config["from_email"]  # validated by its kind, defaults filled in


def test_channel_with_no_default_gives_nothing(tenant, console_defaults):
    assert providers_for(tenant.pk, "push") == []


def test_all_providers_disabled_means_none_not_defaults(tenant, console_defaults):
    make_provider(tenant, name="main", enabled=False)

    assert providers_for(tenant.pk, "email") == []


def test_second_call_is_served_from_the_cache(tenant, django_assert_num_queries):
    make_provider(tenant, name="main")
    first = providers_for(tenant.pk, "email")

    with django_assert_num_queries(0):
        assert providers_for(tenant.pk, "email") == first


def test_api_write_is_seen_at_once(admin, tenant, django_capture_on_commit_callbacks):
    main = make_provider(tenant, name="main", priority=10)
    backup = make_provider(tenant, name="backup", priority=20)
    assert [s.name for s in providers_for(tenant.pk, "email")] == ["main", "backup"]

    with django_capture_on_commit_callbacks(execute=True):
        admin.patch(f"/api/v1/providers/{backup.pk}", {"priority": 1}, format="json")
    assert [s.name for s in providers_for(tenant.pk, "email")] == ["backup", "main"]

    with django_capture_on_commit_callbacks(execute=True):
        admin.delete(f"/api/v1/providers/{main.pk}")
    assert [s.name for s in providers_for(tenant.pk, "email")] == ["backup"]


def test_write_in_another_process_is_seen_through_the_redis_version(tenant):
    main = make_provider(tenant, name="main", priority=10)
    make_provider(tenant, name="backup", priority=20)
    providers_for(tenant.pk, "email")

    # Another process writes: the row changes and it bumps the version; our cache is untouched.
    Provider.objects.filter(pk=main.pk).update(priority=30)
    assert [s.name for s in providers_for(tenant.pk, "email")] == ["main", "backup"]  # still cached
    providers.invalidate(tenant.pk)  # what the other process's write does: a bump in Redis

    assert [s.name for s in providers_for(tenant.pk, "email")] == ["backup", "main"]


def test_entry_expires_after_the_ttl(tenant, monkeypatch):
    monkeypatch.setattr(providers._providers, "seconds", 0.0)
    main = make_provider(tenant, name="main")
    providers_for(tenant.pk, "email")
    Provider.objects.filter(pk=main.pk).update(enabled=False)  # no signal, no version bump

    assert providers_for(tenant.pk, "email") == []


def test_redis_down_reads_the_database(tenant, settings):
    main = make_provider(tenant, name="main")
    providers_for(tenant.pk, "email")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused
    Provider.objects.filter(pk=main.pk).update(enabled=False)  # no signal, no version bump

    assert providers_for(tenant.pk, "email") == []


def test_callers_get_copies_of_the_cached_config(tenant):
    make_provider(tenant, name="main")

    providers_for(tenant.pk, "email")[0].config["host"] = "mutated.example.com"

    assert providers_for(tenant.pk, "email")[0].config["host"] == "smtp.example.com"


def test_undecryptable_secrets_raise_a_clear_error(tenant, settings):
    main = make_provider(tenant, name="main")
    settings.SECRET_KEY = "a-rotated-secret-key"

    with pytest.raises(SecretsUnreadable, match=rf"Provider {main.pk} \('main', smtp\).*ALERTFLOW_ENCRYPTION_KEY"):
        providers_for(tenant.pk, "email")
