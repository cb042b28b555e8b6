import hashlib
import secrets
import uuid

from django.conf import settings
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


class Membership(models.Model):
    """A person (a Django user) in a tenant, with a role."""

    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


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

    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="categories")
    key = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    # A critical category (OTP, security) ignores opt-outs and quiet hours.
    critical = models.BooleanField(default=False)
    channels = models.JSONField(default=list, help_text="Channels used when a send names none.")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "categories"
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="category_unique_key")]

    def __str__(self) -> str:
        return self.key


DEFAULT_CATEGORY_CHANNELS = [Channel.EMAIL.value]
