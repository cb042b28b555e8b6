from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.models import Tenant


class TemplateQuerySet(models.QuerySet):
    def live(self):
        """Templates that may be read and sent: not soft-deleted."""
        return self.filter(deleted__isnull=True)


class Template(models.Model):
    """One (code, locale) of a tenant's template. Its content lives in immutable versions.

    Deleting is soft (`deleted` is set): nothing new is sent with it, its history stays, and
    creating the same (code, locale) again revives it with the next version number.
    """

    # No index of its own: template_unique_locale starts with tenant.
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="templates", db_index=False)
    code = models.CharField(max_length=64)
    locale = models.CharField(max_length=35, default="en")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    # The latest version's number. Written only under `select_for_update` on this row, which
    # is what makes concurrent PUTs produce consecutive versions instead of a conflict.
    version = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)
    deleted = models.DateTimeField(null=True, blank=True)

    objects = TemplateQuerySet.as_manager()

    class Meta:
        ordering = ["code", "locale"]
        constraints = [
            # Also the index of GET/PUT/DELETE /templates/{code}?locale= (tenant, code, locale).
            models.UniqueConstraint(fields=["tenant", "code", "locale"], name="template_unique_locale"),
        ]
        indexes = [
            # GET /templates (live rows of a tenant, by code and locale) and resolve_version's
            # fallback lookup (tenant, code, locale IN chain, not deleted).
            models.Index(
                fields=["tenant", "code", "locale"], condition=Q(deleted__isnull=True), name="template_live_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.locale})"


class TemplateVersionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Template versions are immutable: create the next version instead.")


class TemplateVersion(models.Model):
    """The content of a template at one point in time. Never changed once written.

    Sends pin a version when they are accepted, so what was rendered can always be shown, and
    compiled templates can be cached by version id without invalidation.
    """

    # No index of its own: templateversion_unique_number starts with template.
    template = models.ForeignKey(Template, models.CASCADE, related_name="versions", db_index=False)
    number = models.PositiveIntegerField()
    # {"email": {"subject", "html", "text"}, "sms": {"text"}, ...}: see rendering.CHANNEL_FIELDS.
    channels = models.JSONField()
    created = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=200, blank=True, default="")

    objects = TemplateVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-number"]
        constraints = [
            # Also the index of "version N of a template" (render, get ?version=) and of
            # GET .../versions (template, number DESC).
            models.UniqueConstraint(fields=["template", "number"], name="templateversion_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.template} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Template versions are immutable: create the next version instead.")
        super().save(*args, **kwargs)
