import hashlib
import secrets
import uuid

from django.contrib.auth.hashers import check_password, is_password_usable, make_password
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alertflow.choices import Channel, Priority, Role

API_KEY_PREFIX = "af_"
# Enough of the key to recognise it in a list, far too little to guess the rest.
VISIBLE_PREFIX_LENGTH = 11


class Tenant(models.Model):
    """A customer of AlertFlow: one company's backend, its users, templates and messages."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    default_locale = models.CharField(max_length=35, default="en")
    active = models.BooleanField(default=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def unusable_password() -> str:
    return make_password(None)


class Membership(models.Model):
    """A person's identity in one tenant: their email, name, password and role there.

    Identities are not shared between tenants: the same email invited by two tenants is two
    rows with two passwords, so nothing one tenant does can set or read another tenant's
    member (DESIGN §5). Django's own users are the operators who use the admin, nothing else.
    """

    # No index of its own: membership_unique_email starts with tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="memberships", db_index=False)
    email = models.EmailField()
    name = models.CharField(max_length=150, blank=True)
    # A Django password hash; unusable until the person accepts their invitation.
    password = models.CharField(max_length=128, default=unusable_password)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "email"], name="membership_unique_email")]

    def __str__(self) -> str:
        return f"{self.email} in {self.tenant} ({self.role})"

    def save(self, *args, **kwargs):
        self.email = self.normalize_email(self.email)
        super().save(*args, **kwargs)

    @staticmethod
    def normalize_email(email: str) -> str:
        """The one spelling stored and looked up: emails are compared case-insensitively."""
        return email.strip().lower()

    def set_password(self, raw_password: str) -> None:
        self.password = make_password(raw_password)

    def check_password(self, raw_password: str) -> bool:
        def upgrade(raw):  # a hash made with an older hasher or fewer iterations is re-made
            self.set_password(raw)
            self.save(update_fields=["password"])

        return check_password(raw_password, self.password, upgrade)

    def has_usable_password(self) -> bool:
        return is_password_usable(self.password)


class ApiKeyQuerySet(models.QuerySet):
    def usable(self):
        now = timezone.now()
        return self.filter(revoked__isnull=True).filter(Q(expires__isnull=True) | Q(expires__gt=now))


class ApiKey(models.Model):
    """A bearer credential for the API.

    The secret is shown once, at creation; only its SHA-256 is stored. Keys created by
    `POST /api/v1/auth/login` belong to a membership, expire, and take that membership's
    current role, so demoting a member demotes their open sessions too.
    """

    class Kind(models.TextChoices):
        API = "api"
        SESSION = "session"

    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.API)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ADMIN)
    membership = models.ForeignKey(Membership, models.CASCADE, null=True, blank=True, related_name="sessions")
    prefix = models.CharField(max_length=VISIBLE_PREFIX_LENGTH)
    hashed = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def issue(cls, tenant: Tenant, name: str, role: str, **fields) -> tuple["ApiKey", str]:
        """Create a key and return it with its secret, which is not stored anywhere."""
        secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            tenant=tenant,
            name=name,
            role=role,
            prefix=secret[:VISIBLE_PREFIX_LENGTH],
            hashed=cls.hash(secret),
            **fields,
        )
        return key, secret

    @property
    def effective_role(self) -> str:
        return self.membership.role if self.membership_id else self.role

    @property
    def usable(self) -> bool:
        return self.revoked is None and (self.expires is None or self.expires > timezone.now())


class Category(models.Model):
    """A notification type of a tenant (`promo`, `security_alert`): its defaults for a send."""

    # No index of its own: category_unique_key starts with tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="categories", db_index=False)
    key = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    # A critical category (OTP, security) ignores opt-outs and quiet hours.
    critical = models.BooleanField(default=False)
    channels = models.JSONField(default=list, help_text="Channels used when a send names none.")
    # Seconds a message of this category may wait to be sent; None: the deployment's default.
    expires_in = models.PositiveIntegerField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "categories"
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="category_unique_key")]

    def __str__(self) -> str:
        return self.key


DEFAULT_CATEGORY_CHANNELS = [Channel.EMAIL.value]


class Quota(models.Model):
    """A tenant's monthly allowance of messages on one channel. No row: unlimited."""

    # No index of its own: quota_unique_channel starts with tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="quotas", db_index=False)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    monthly_limit = models.PositiveIntegerField(help_text="Messages per calendar month (UTC).")

    class Meta:
        ordering = ["tenant", "channel"]
        constraints = [models.UniqueConstraint(fields=["tenant", "channel"], name="quota_unique_channel")]

    def __str__(self) -> str:
        return f"{self.channel}: {self.monthly_limit}/month"


class Usage(models.Model):
    """Messages a tenant was charged on one channel in one month, raised at accept time by one
    conditional upsert (tenants/usage.py): the sum of the month's rows of the channel, one per
    shard (alertflow/counters.py; shard 0 while the channel has a quota)."""

    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="usage", db_index=False)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # The first day of the month (UTC).
    period = models.DateField()
    shard = models.PositiveSmallIntegerField(
        default=0,
        help_text="0: charged against the channel's quota; 1 and up: charged while it had none, by "
        "concurrent sends that did not wait for each other. The month's usage is the sum.",
    )
    used = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-period", "channel", "shard"]
        verbose_name_plural = "usage"
        constraints = [
            # Also the index of every lookup: a tenant's counters of one month.
            models.UniqueConstraint(fields=["tenant", "period", "channel", "shard"], name="usage_unique_period_shard")
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.period:%Y-%m}: {self.used}"
