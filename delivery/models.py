import uuid

from django.db import models
from django.utils import timezone

from alertflow.channels import CHANNELS
from tenants.models import Tenant

from . import crypto

# Channels AlertFlow delivers itself (in-app) have no provider to configure.
PROVIDER_CHANNELS = [(channel.name, channel.label) for channel in CHANNELS.values() if channel.needs_provider]


def provider_class(channel: str, kind: str):
    """The registry's class for `kind` on `channel`, or None when the channel has no such kind."""
    from . import channels  # the registry imports every provider SDK: load it only when needed

    try:
        return channels.provider_class(channel, kind)
    except ValueError:
        return None


def provider_kinds(channel: str) -> list[str]:
    """The kinds the registry offers on `channel`, sorted."""
    from . import channels

    return channels.kinds(channel)


class Provider(models.Model):
    """One provider account of a tenant on one channel (its SendGrid, its Twilio number).

    The send path tries a tenant's enabled providers in `priority` order (lower first) and fails
    over to the next. Secret config fields (the provider class's `secret_fields`) are stored
    encrypted in `secrets`, never in `config`: read them with `full_config()`, write the whole
    config with `set_config()`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="providers")
    channel = models.CharField(max_length=10, choices=PROVIDER_CHANNELS)
    kind = models.CharField(max_length=32, help_text="A kind of the channel's registry: smtp, twilio, fcm…")
    name = models.CharField(max_length=100)
    priority = models.IntegerField(default=0, help_text="Failover order within the channel: lower first.")
    enabled = models.BooleanField(default=True)
    # The provider account's own limit (Twilio's per-number rate, an ESP plan's): a token bucket
    # shared by every worker keeps sends under it. Null: no limit.
    rate_limit = models.FloatField(null=True, blank=True, help_text="Sends per second at most.")
    config = models.JSONField(default=dict, blank=True, help_text="Non-secret settings.")
    # Fernet token (delivery/crypto.py) of the secret fields' JSON; "" when none is set.
    secrets = models.TextField(blank=True, default="")
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["channel", "priority", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "channel", "name"], name="provider_unique_name")]
        indexes = [
            # The send path's "providers for this tenant and channel" (providers_for(), on a cache
            # miss): WHERE tenant_id = %s AND channel = %s AND enabled ORDER BY priority.
            models.Index(fields=["tenant", "channel", "enabled", "priority"], name="provider_send_order"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.channel}/{self.kind})"

    @property
    def secret_fields(self) -> tuple[str, ...]:
        cls = provider_class(self.channel, self.kind)
        return tuple(cls.secret_fields) if cls is not None else ()

    def decrypted_secrets(self) -> dict:
        """The secret fields in clear. Raises `crypto.SecretsUnreadable` when no key opens them."""
        return crypto.decrypt_json(self.secrets) if self.secrets else {}

    def full_config(self) -> dict:
        """The config the provider class takes: `config` merged with the decrypted secrets.

        Raises `crypto.SecretsUnreadable` when the secrets cannot be decrypted.
        """
        return {**self.config, **self.decrypted_secrets()}

    def set_config(self, config: dict) -> None:
        """Store a complete (already validated) config: secret fields encrypted, the rest in clear.

        Keys whose value is None are dropped, and so are empty secrets (a kind's "no password"),
        so `secrets` is "" when no secret holds a value. Does not save.
        """
        secret_fields = set(self.secret_fields)
        config = {key: value for key, value in config.items() if value is not None}
        secrets = {key: value for key, value in config.items() if key in secret_fields and value != ""}
        self.config = {key: value for key, value in config.items() if key not in secret_fields}
        self.secrets = crypto.encrypt_json(secrets) if secrets else ""

    def secrets_set(self) -> list[str]:
        """Names of the secret fields that hold a value (safe to show: the names, not the values).

        Raises `crypto.SecretsUnreadable` when the secrets cannot be decrypted.
        """
        return sorted(key for key, value in self.decrypted_secrets().items() if value not in (None, ""))
