"""Webhook endpoints, the event outbox, deliveries and their attempts.

Imported by `delivery.models`, so Django counts these as models of the `delivery` app.
"""

import secrets as secrets_module
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from delivery import crypto
from tenants.models import Tenant

from .types import EVENT_TYPES

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def new_secret() -> str:
    return SECRET_PREFIX + secrets_module.token_urlsafe(32)


def plain_http_refused(url: str) -> str | None:
    """Why events may not be POSTed to `url` in clear (None: they may): an http URL, unless
    settings.ALERTFLOW_WEBHOOK_ALLOW_HTTP. Checked when a URL is saved and before every POST, so
    turning the setting off stops the http endpoints saved before."""
    if url.lower().startswith("https://") or settings.ALERTFLOW_WEBHOOK_ALLOW_HTTP:
        return None
    return "webhook URLs must be https: events would travel in clear"


class WebhookEndpoint(models.Model):
    """A URL of a tenant's that gets the events it subscribed to, signed with its secret.

    The secret is stored encrypted (delivery/crypto.py), not hashed: signing needs it. After a
    rotation the previous secret signs too until `previous_expires`, so a receiver can switch
    secrets without missing a delivery.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text="Event types sent here.")
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    # Why AlertFlow disabled it ("" when the tenant did, or when it is enabled).
    disabled_reason = models.CharField(max_length=200, blank=True)
    # Fernet token of {"current": ..., "previous": ...} (delivery/crypto.py).
    secrets = models.TextField()
    previous_expires = models.DateTimeField(null=True, blank=True)
    # Since when every attempt failed (null after a success), and how many deliveries in a row
    # gave up: what disables an endpoint that keeps failing.
    failing_since = models.DateTimeField(null=True, blank=True)
    failed_deliveries = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            # The subscription lookup on a cache miss (events.subscriptions): a tenant's enabled
            # endpoints.
            models.Index(fields=["tenant"], condition=Q(enabled=True), name="webhook_endpoint_enabled"),
        ]

    def __str__(self) -> str:
        return self.url

    def set_secret(self, secret: str, *, previous: str | None = None, previous_expires: datetime | None = None):
        self.secrets = crypto.encrypt_json({"current": secret, "previous": previous})
        self.previous_expires = previous_expires if previous else None

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets to sign with now: the current one, then the previous one while it overlaps.

        Raises `crypto.SecretsUnreadable` when the encryption keys changed.
        """
        stored = crypto.decrypt_json(self.secrets)
        now = now or timezone.now()
        keys = [stored["current"]]
        if stored.get("previous") and self.previous_expires and self.previous_expires > now:
            keys.append(stored["previous"])
        return keys

    def rotate(self, overlap: timedelta, now: datetime | None = None) -> str:
        """Make a new current secret; the old one keeps signing for `overlap`. Returns the new one
        (the caller saves)."""
        now = now or timezone.now()
        try:
            current = crypto.decrypt_json(self.secrets)["current"]
        except crypto.SecretsUnreadable:
            # The encryption keys changed: the old secret is gone, and a new one is the way out.
            current, overlap = None, timedelta(0)
        secret = new_secret()
        self.set_secret(secret, previous=current if overlap > timedelta(0) else None, previous_expires=now + overlap)
        return secret


class WebhookEvent(models.Model):
    """The outbox: one event, written in the transaction of the change that caused it.

    `id` is the event id receivers de-duplicate on (`X-AlertFlow-Event-Id`, and `id` in the body):
    a retry or a replay sends the same id.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+")
    type = models.CharField(max_length=40, choices=[(t, t) for t in EVENT_TYPES])
    payload = models.JSONField()
    # For events that must be written once per subject (`notification.completed`: the
    # notification's id); "" for the others.
    key = models.CharField(max_length=64, blank=True, default="")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            # The retention prune (relay.prune): `created < cutoff`, oldest first.
            models.Index(fields=["created"], name="webhook_event_created"),
        ]
        constraints = [
            # Two transactions that each find a notification complete write one event between them.
            models.UniqueConstraint(
                fields=["tenant", "type", "key"], condition=~Q(key=""), name="webhook_event_once_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class WebhookDelivery(models.Model):
    """One event to one endpoint: pending until a 2xx answer, or failed when its tries ran out.

    A pending delivery is due at `next_attempt`. The relay's claim pushes `next_attempt` one
    lease ahead before it POSTs: a relay killed mid-POST leaves the delivery due again when the
    lease runs out, and nothing is lost.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+", db_index=False)
    event = models.ForeignKey(WebhookEvent, models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, models.CASCADE, related_name="deliveries", db_index=False)
    # Copied from the event, so the deliveries list filters without a join.
    event_type = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt = models.DateTimeField(null=True, blank=True, default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)
    delivered = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_once")]
        indexes = [
            # The relay's poll: `status = 'pending' AND next_attempt <= now() ORDER BY next_attempt`.
            models.Index(fields=["next_attempt"], condition=Q(status="pending"), name="webhook_delivery_due"),
            # GET /api/v1/webhooks/{id}/deliveries (newest first, by status) and replay by filter.
            models.Index(fields=["endpoint", "status", "-created"], name="webhook_delivery_by_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} to {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: what the endpoint answered (a short excerpt), or why it failed."""

    delivery = models.ForeignKey(WebhookDelivery, models.CASCADE, related_name="attempt_log")
    started = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # The first bytes of the answer, printable characters only.
    response = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started", "-id"]

    def __str__(self) -> str:
        return f"{self.status_code or self.error} at {self.started:%Y-%m-%d %H:%M:%S}"
