import uuid

from django.db import models
from django.db.models import Q
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
    # No index of its own: both indexes below start with tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="providers", db_index=False)
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
        """The secret fields in clear (a dict whose repr masks them).

        Raises `crypto.SecretsUnreadable` when no key opens them.
        """
        secrets = crypto.decrypt_json(self.secrets) if self.secrets else {}
        return crypto.RedactedConfig(secrets, tuple(secrets))

    def full_config(self) -> dict:
        """The config the provider class takes: `config` merged with the decrypted secrets (a
        dict whose repr masks them).

        Raises `crypto.SecretsUnreadable` when the secrets cannot be decrypted.
        """
        return crypto.RedactedConfig({**self.config, **self.decrypted_secrets()}, self.secret_fields)

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


class InboxSecret(models.Model):
    """A tenant's inbox secret: its backend signs a recipient's external id with it (HMAC-SHA256),
    so a page can open the recipient's inbox without asking us for a token per page view.

    Stored encrypted (delivery/crypto.py), not hashed: verifying an HMAC needs the secret itself.
    Rotating it invalidates every HMAC computed with the old one.
    """

    tenant = models.OneToOneField(Tenant, models.CASCADE, primary_key=True, related_name="inbox_secret")
    secret = models.TextField(help_text="Fernet token of the secret.")
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"inbox secret of {self.tenant_id}"

    def reveal(self) -> str:
        """The secret in clear. Raises `crypto.SecretsUnreadable` when no key opens it."""
        return crypto.decrypt_json(self.secret)["secret"]


class InboxItem(models.Model):
    """One in-app message in its recipient's inbox, and what the recipient did with it.

    The key is the message's own id, so the inbox, the history and webhooks name it alike. Its
    content is copied from the rendered message when the `inapp` channel stores it. Timestamps
    are the state: unread means `read` is null, unseen `seen` is null, archived `archived` set;
    a snoozed item is hidden (and not counted) until `snoozed_until`.
    """

    message = models.OneToOneField("notifications.Message", models.CASCADE, primary_key=True, related_name="inbox_item")
    # No index of its own: every query goes through the recipient, which belongs to one tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+", db_index=False)
    recipient = models.ForeignKey("preferences.Recipient", models.CASCADE, related_name="inbox", db_index=False)
    category = models.CharField(max_length=64, blank=True)
    tags = models.JSONField(default=list, blank=True)
    title = models.TextField(blank=True)
    body = models.TextField(blank=True)
    action_url = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now)
    seen = models.DateTimeField(null=True, blank=True)
    read = models.DateTimeField(null=True, blank=True)
    archived = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-message_id"]
        indexes = [
            # GET /api/v1/inbox: a recipient's feed, newest first, cursor-paginated.
            models.Index(fields=["recipient", "-created", "-message"], name="inbox_feed"),
            # The exact unread and unseen counts sent with every page and every push: only the
            # recipient's unarchived unread items are read.
            models.Index(
                fields=["recipient"], condition=Q(archived__isnull=True, read__isnull=True), name="inbox_unread"
            ),
            models.Index(
                fields=["recipient"], condition=Q(archived__isnull=True, seen__isnull=True), name="inbox_unseen"
            ),
        ]

    def __str__(self) -> str:
        return f"inbox item {self.message_id} of {self.recipient_id}"


# Tenant webhooks live in their own package; importing them here makes them models of this app.
from .webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent  # noqa: E402, F401
