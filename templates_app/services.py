"""Templates: creating, versioning, deleting and resolving them; the interface of the send pipeline.

The pipeline needs four things from this app, all importable from here:
`resolve_version`, `validate_content`, `build_context` and `render_channel` (see rendering.py).
"""

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import serializers

from alertflow.errors import ApiError
from alertflow.versioned_cache import VersionedCache
from tenants.models import Tenant
from tenants.serializers import normalize_locale

from .models import Template, TemplateVersion
from .rendering import RenderError, RenderResult, RenderTooExpensive, build_context, render_channel, validate_content

__all__ = [
    "RenderError",
    "RenderResult",
    "RenderTooExpensive",
    "build_context",
    "create_template",
    "delete_templates",
    "locale_chain",
    "render_channel",
    "resolve_version",
    "update_template",
    "validate_content",
    "versions_for_sends",
]

DEFAULT_LOCALE = "en"


# The versions sends resolve (notifications.services.template_for), per process
# (alertflow/versioned_cache.py). Every write of a template saves its Template row (a new
# version raises `Template.version`), so templates_app/signals.py sees them all; the soft delete
# is a queryset update and bumps it itself (delete_templates).
versions_for_sends = VersionedCache("templates")


def lookup_spelling(locale: str) -> str:
    """The spelling `locale` (a recipient's, a tenant's default, a request's) is looked up by
    among stored templates: canonical when the one rule for a locale accepts it
    (tenants.serializers.normalize_locale, which every new template's locale passes), else as
    it is. A template stored before templates followed that rule (their own looser pattern) or
    a tenant default saved unchecked keep their spelling: still found by it, never refused.
    POSIX's `_` reads as `-`, as that older pattern read it: a default saved as `fr_CA` still
    finds the `fr-CA` templates."""
    try:
        return normalize_locale(locale.replace("_", "-"))
    except serializers.ValidationError:
        return locale


def locale_chain(locale: str | None, default_locale: str | None) -> list[str]:
    """The locales to try, best first: `fr-CA` -> `fr` -> the tenant's default -> `en`."""
    chain: list[str] = []
    for candidate in (locale, default_locale, DEFAULT_LOCALE):
        if not candidate:
            continue
        parts = lookup_spelling(candidate).split("-")
        chain.extend("-".join(parts[:size]) for size in range(len(parts), 0, -1))
    return list(dict.fromkeys(chain))


def resolve_version(tenant: Tenant, code: str, locale: str | None, version: int | None = None) -> TemplateVersion:
    """The version to render for `code` in `locale`, after fallback; the latest unless `version`.

    The locale is chosen first (the first live one in `locale_chain`), then the version within
    it: version numbers count per locale. Deleted templates are not resolvable. Raises ApiError
    404 `template_not_found` or `version_not_found`. The returned version's `.template` is loaded.
    """
    chain = locale_chain(locale, tenant.default_locale)
    found = {t.locale: t for t in Template.objects.live().filter(tenant=tenant, code=code, locale__in=chain)}
    template = next((found[candidate] for candidate in chain if candidate in found), None)
    if template is None:
        raise ApiError(
            404,
            "template_not_found",
            f"No template {code!r} in {chain[0] if chain else locale} or its fallbacks.",
            {"code": code, "locales": chain},
        )
    return get_version(template, version)


def create_template(
    tenant: Tenant, *, code: str, locale: str, name: str, description: str, channels: dict, created_by: str = ""
) -> TemplateVersion:
    """Create (code, locale) with version 1, or revive a deleted one with its next version.

    Raises ApiError 409 `template_exists` when the (code, locale) is live, including when a
    concurrent request created it first.
    """
    exists = ApiError(409, "template_exists", f"Template {code!r} already exists in {locale}; PUT a new version.")
    with transaction.atomic():
        template = Template.objects.select_for_update().filter(tenant=tenant, code=code, locale=locale).first()
        if template is None:
            try:
                with transaction.atomic():  # a savepoint: the loser of a concurrent create lands here
                    template = Template.objects.create(tenant=tenant, code=code, locale=locale, name=name)
            except IntegrityError:
                raise exists from None
        elif template.deleted is None:
            raise exists
        template.deleted = None
        return _add_version(template, channels, created_by, name=name, description=description)


def update_template(template: Template, *, created_by: str = "", **changes) -> TemplateVersion:
    """Write the next version of `template`: `changes` may hold `name`, `description`, `channels`.

    Content not given is carried over from the latest version. The template row is locked, so
    concurrent updates get consecutive numbers. Raises ApiError 404 if it was deleted meanwhile.
    """
    with transaction.atomic():
        locked = Template.objects.live().select_for_update().filter(pk=template.pk).first()
        if locked is None:
            raise ApiError(404, "template_not_found", f"Template {template.code!r} ({template.locale}) was deleted.")
        channels = changes.pop("channels", None)
        if channels is None:
            channels = TemplateVersion.objects.get(template=locked, number=locked.version).channels
        return _add_version(locked, channels, created_by, **changes)


def _add_version(template: Template, channels: dict, created_by: str, **changes) -> TemplateVersion:
    """The caller holds the template row (locked or just created)."""
    for name, value in changes.items():
        setattr(template, name, value)
    template.version += 1
    template.updated = timezone.now()
    template.save()
    version = TemplateVersion.objects.create(
        template=template, number=template.version, channels=channels, created=template.updated, created_by=created_by
    )
    version.template = template
    return version


@transaction.atomic
def delete_templates(templates: QuerySet) -> int:
    """Soft-delete the given live templates (one locale, or all of a code); return how many."""
    live = templates.filter(deleted__isnull=True)
    # A queryset update sends no signal: the cached versions are dropped here. In a transaction,
    # so the second bump comes after the UPDATE's commit: in autocommit both came before it,
    # and a send resolving the template in between kept the live row under the final version.
    for tenant_id in set(live.values_list("tenant_id", flat=True)):
        versions_for_sends.changed(tenant_id)
    return live.update(deleted=timezone.now())


def get_version(template: Template, number: int | None = None) -> TemplateVersion:
    """Version `number` (default the latest) of a template the caller already scoped."""
    number = template.version if number is None else number
    version = TemplateVersion.objects.filter(template=template, number=number).first()
    if version is None:
        raise ApiError(
            404,
            "version_not_found",
            f"Template {template.code!r} ({template.locale}) has no version {number}.",
            {"code": template.code, "locale": template.locale, "version": number},
        )
    version.template = template
    return version
