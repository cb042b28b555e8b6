"""A tenant's end users (recipients), their push devices, preferences and topic subscriptions."""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from alertflow.choices import Channel
from tenants.models import Tenant

DEFAULT_TIMEZONE = "UTC"
CHANNELS = tuple(Channel.values)


class Recipient(models.Model):
    """Someone a tenant notifies, addressed by the tenant's own id for them (`external_id`).

    Contact fields are optional: a recipient with no email is simply not reachable by email.
    `email` is stored lower-cased and `phone` in E.164, so lookups are exact matches on an index.
    """

    # No index of its own: the unique (tenant, external_id) index starts with tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="recipients", db_index=False)
    external_id = models.CharField(max_length=128)
    email = models.EmailField(max_length=254, blank=True)
    phone = models.CharField(max_length=16, blank=True, help_text="E.164, e.g. +14155552671")
    name = models.CharField(max_length=200, blank=True)
    locale = models.CharField(max_length=35, blank=True, help_text="BCP 47; blank means the tenant's default")
    timezone = models.CharField(max_length=64, default=DEFAULT_TIMEZONE, help_text="IANA name")
    data = models.JSONField(default=dict, blank=True)
    topics = models.ManyToManyField("Topic", through="Subscription", related_name="recipients", blank=True)
    created = models.DateTimeField(default=now)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        # The unique index below serves this order, so listing a tenant's recipients is an index scan.
        ordering = ["external_id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "external_id"], name="recipient_unique_external_id")]
        indexes = [
            # GET /recipients?email= and suppression/bounce lookups by address.
            models.Index(fields=["tenant", "email"], name="recipient_email_idx", condition=~Q(email="")),
            # GET /recipients?phone= and inbound SMS (STOP) lookups by number.
            models.Index(fields=["tenant", "phone"], name="recipient_phone_idx", condition=~Q(phone="")),
        ]

    def __str__(self) -> str:
        return self.external_id


class Preference(models.Model):
    """A recipient's preference document; no row means the defaults (everything on, no quiet hours).

    `channels` holds a switch for every channel, `categories` only the overrides the recipient
    set: `{"promo": {"email": false}}`. Quiet hours are wall-clock times in the recipient's
    timezone. Read it through `preferences.services`, which caches it.
    """

    recipient = models.OneToOneField(Recipient, models.CASCADE, primary_key=True, related_name="preference")
    channels = models.JSONField(default=dict, blank=True)
    categories = models.JSONField(default=dict, blank=True)
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Quiet hours are a window: both ends or neither, and a window of zero length is none.
            models.CheckConstraint(
                condition=Q(quiet_start__isnull=True, quiet_end__isnull=True)
                | (Q(quiet_start__isnull=False, quiet_end__isnull=False) & ~Q(quiet_start=models.F("quiet_end"))),
                name="preference_quiet_hours_window",
            )
        ]

    def __str__(self) -> str:
        return f"preferences of {self.recipient_id}"


class DeviceQuerySet(models.QuerySet):
    def active(self):
        """Devices push may still be sent to (not removed, not reported dead by a provider)."""
        return self.filter(active=True)


class Device(models.Model):
    """A push token: FCM registration token, APNs device token or a Web Push subscription (JSON)."""

    class Platform(models.TextChoices):
        FCM = "fcm", "FCM"
        APNS = "apns", "APNs"
        WEBPUSH = "webpush", "Web Push"

    # No index of its own: the unique (tenant, platform, token) index starts with tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="devices", db_index=False)
    recipient = models.ForeignKey(Recipient, models.CASCADE, related_name="devices", db_index=False)
    platform = models.CharField(max_length=10, choices=Platform.choices)
    # Web Push subscriptions are stored as canonical JSON text (sorted keys, no spaces), so the
    # same subscription posted twice is the same string; see `serializers.DeviceSerializer`.
    token = models.TextField()
    active = models.BooleanField(default=True)
    reason = models.CharField(max_length=100, blank=True, help_text="Why the device was deactivated")
    last_seen = models.DateTimeField(default=now)
    created = models.DateTimeField(default=now)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen", "-id"]
        constraints = [
            # A token identifies one app install: re-registering it is idempotent (tenant-wide).
            models.UniqueConstraint(fields=["tenant", "platform", "token"], name="device_unique_token"),
        ]
        indexes = [
            # Push sends: `recipient.devices.active()`; also the recipient's device list and the
            # cascade when a recipient is erased.
            models.Index(fields=["recipient", "active"], name="device_recipient_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.platform} device of {self.recipient_id}"

    def clean(self):
        # The admin's check (its forms call it; the API's writes take both from the caller's tenant
        # and do not): a push to the recipient would read another tenant's device.
        if self.tenant_id and self.recipient_id and self.recipient.tenant_id != self.tenant_id:
            raise ValidationError({"recipient": f"A recipient of {self.recipient.tenant}, not of {self.tenant}."})

    def deactivate(self, reason: str) -> None:
        """Stop sending to this token, e.g. FCM `UNREGISTERED` or APNs 410 `Unregistered`.

        One UPDATE, so a worker holding a stale instance cannot undo a concurrent re-registration
        of other fields; re-posting the token through the API reactivates it.
        """
        reason = reason[: Device._meta.get_field("reason").max_length]
        Device.objects.filter(pk=self.pk).update(active=False, reason=reason)
        self.active, self.reason = False, reason


class Topic(models.Model):
    """A named group of recipients (`release-notes`, `team-42`) that a send can fan out to."""

    # No index of its own: the unique (tenant, key) index starts with tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="topics", db_index=False)
    key = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    created = models.DateTimeField(default=now)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="topic_unique_key")]

    def __str__(self) -> str:
        return self.key

    @property
    def subscribers(self) -> models.QuerySet[Recipient]:
        """The topic's recipients ordered by id, for fan-out in chunks by keyset:
        `topic.subscribers.filter(id__gt=last).values_list("id", flat=True)[:1000]`.
        """
        return Recipient.objects.filter(subscriptions__topic=self).order_by("id")


class Subscription(models.Model):
    topic = models.ForeignKey(Topic, models.CASCADE, related_name="subscriptions", db_index=False)
    recipient = models.ForeignKey(Recipient, models.CASCADE, related_name="subscriptions", db_index=False)
    created = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            # Also the index of fan-out: `WHERE topic_id = %s AND recipient_id > %s ORDER BY
            # recipient_id` (Topic.subscribers in chunks) and of the subscribers endpoint.
            models.UniqueConstraint(fields=["topic", "recipient"], name="subscription_unique_recipient"),
        ]
        indexes = [
            # Erasing a recipient deletes `WHERE recipient_id IN (...)`; a recipient's topics.
            models.Index(fields=["recipient"], name="subscription_recipient_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id} in {self.topic_id}"

    def clean(self):
        # The admin's check (its forms call it; the API finds both in the caller's tenant and does
        # not): a topic send would reach another tenant's recipient.
        if self.topic_id and self.recipient_id and self.recipient.tenant_id != self.topic.tenant_id:
            raise ValidationError(
                {"recipient": f"A recipient of {self.recipient.tenant}; the topic is of {self.topic.tenant}."}
            )


class Suppression(models.Model):
    """An address a tenant must not contact on a channel: for every category (`category` null:
    a hard bounce, a spam complaint, an SMS STOP, a dead push token; the law or the provider
    requires it, so it blocks critical categories too) or for one category only.

    `address` is normalised as the channel addresses recipients (`Message.to`): emails lower-cased,
    phone numbers in E.164, push tokens as registered; see `preferences.suppressions.normalise`.
    Written and read through `preferences.suppressions`, which sends `suppression_created`.
    """

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce"
        COMPLAINT = "complaint"
        SMS_STOP = "sms_stop"
        DEAD_TOKEN = "dead_token"  # noqa: S105 (a reason, not a secret)
        MANUAL = "manual"
        IMPORT = "import"

    # No index of its own: every index below starts with tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="suppressions", db_index=False)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # Long enough for a Web Push subscription (its canonical JSON, as `Device.token` stores it).
    address = models.CharField(max_length=2000)
    # A category's suppressions go with it; a global one (null) is never widened from a scoped one.
    category = models.ForeignKey(
        "tenants.Category", models.CASCADE, null=True, blank=True, related_name="+", db_index=False
    )
    reason = models.CharField(max_length=16, choices=Reason.choices)
    created = models.DateTimeField(default=now)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            # One row per (tenant, channel, address, category), a NULL category counted once: two
            # partial unique indexes, which PostgreSQL and SQLite both have (NULLS NOT DISTINCT is
            # PostgreSQL 15+ only). They also serve the send-time check, `WHERE tenant_id = %s AND
            # channel = %s AND address IN (...)`, once per fan-out chunk and once per worker batch.
            models.UniqueConstraint(
                fields=["tenant", "channel", "address"],
                condition=Q(category__isnull=True),
                name="suppression_unique_global",
            ),
            models.UniqueConstraint(
                fields=["tenant", "channel", "address", "category"],
                condition=Q(category__isnull=False),
                name="suppression_unique_category",
            ),
        ]
        indexes = [
            # GET /api/v1/suppressions: a tenant's list, newest first (filters narrow it further).
            models.Index(fields=["tenant", "-created", "-id"], name="suppression_list_idx"),
            # Deleting a category deletes its suppressions: `WHERE category_id IN (...)`.
            models.Index(fields=["category"], condition=Q(category__isnull=False), name="suppression_category_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address}"
