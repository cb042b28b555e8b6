"""Templates: creating, versioning, deleting and resolving them; the interface of the send pipeline.

The pipeline needs four things from this app, all importable from here:
`resolve_version`, `validate_content`, `build_context` and `render_channel` (see rendering.py).
"""

import re

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from alertflow.errors import ApiError
from alertflow.versioned_cache import VersionedCache
from tenants.models import Tenant

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
    "normalize_locale",
    "render_channel",
    "resolve_version",
    "update_template",
    "validate_content",
    "versions_for_sends",
]

DEFAULT_LOCALE = "en"
# BCP 47-ish: a language, then subtags (script, region, variant); "_" is accepted for "-".
LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


# The versions sends resolve (notifications.services.template_for), per process
# (alertflow/versioned_cache.py). Every write of a template saves its Template row (a new
# version raises `Template.version`), so templates_app/signals.py sees them all; the soft delete
# is a queryset update and bumps it itself (delete_templates).
versions_for_sends = VersionedCache("templates")


def normalize_locale(value: str) -> str:
    """`fr_ca` -> `fr-CA`, `zh-hant-tw` -> `zh-Hant-TW`. Raises ValueError for a non-locale."""
    if not isinstance(value, str) or len(value) > 35 or not LOCALE_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a locale (like en, fr or fr-CA).")
    language, *subtags = value.replace("_", "-").split("-")
    parts = [language.lower()]
    for tag in subtags:
        if len(tag) == 4 and tag.isalpha():
            parts.append(tag.title())  # script
        elif len(tag) == 2 or (len(tag) == 3 and tag.isdigit()):
            parts.append(tag.upper())  # region
        else:
            parts.append(tag.lower())
    return "-".join(parts)


def locale_chain(locale: str | None, default_locale: str | None) -> list[str]:
    """The locales to try, best first: `fr-CA` -> `fr` -> the tenant's default -> `en`."""
    chain: list[str] = []
    for candidate in (locale, default_locale, DEFAULT_LOCALE):
        try:
            parts = normalize_locale(candidate).split("-")
        except ValueError:
            continue
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
