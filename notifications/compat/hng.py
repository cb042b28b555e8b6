"""The HNG distributed notification system (seed 002): its API gateway's send and status.

`POST /api/v1/notifications` with `notification_type`, `user_id`, `template_code`, `variables`,
`request_id`, `priority` (0-10) and `metadata` becomes AlertFlow's send of template
`template_code` to recipient `user_id` on channel `notification_type`. The answer is HNG's
envelope; its `notification_id` is `notif_` + the AlertFlow notification id, which tells
`GET /api/v1/notifications/{id}` to answer in HNG's words too. Its user service's
`GET/PUT /api/v1/users/{id}/preferences` reads and switches the recipient's email and push channels.

Its template service's templates (`template_code`, `subject`, `body`, `language`) are AlertFlow
templates of that code in that locale, with email content (`subject`, `body` as the html) and
push content (`subject` as the title): HNG's email and push services shared one template. `PUT`
writes the next version; `POST /api/v1/templates/render` renders the email (else push) content.
`GET /api/v1/metrics` counts the tenant's messages of the last 24 hours and this month's usage.
"""

import uuid
from datetime import timedelta

from django.db.models import Count
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from alertflow.choices import Priority, Role
from alertflow.errors import ApiError
from alertflow.views import TenantScopedMixin
from templates_app import services as template_services
from templates_app.models import TemplateVersion
from templates_app.serializers import LocaleField
from tenants.models import Tenant
from tenants.usage import usage_report

from ..models import Message, Notification
from . import accept, template_code_field, validated

ID_PREFIX = "notif_"

# HNG routes 0-4 to its regular queue and 5-10 to its priority queue; AlertFlow has four levels.
PRIORITY_LEVELS = [(8, Priority.CRITICAL), (5, Priority.HIGH), (3, Priority.NORMAL), (0, Priority.LOW)]

# HNG clients know three status words.
PENDING = {
    Message.Status.SCHEDULED,
    Message.Status.QUEUED,
    Message.Status.SENDING,
    Message.Status.RETRYING,
    Message.Status.PAUSED,
}
DELIVERED = {Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ}


class HngNotificationSerializer(serializers.Serializer):
    notification_type = serializers.ChoiceField(choices=["email", "push"])
    user_id = serializers.CharField(max_length=255)
    template_code = serializers.CharField(max_length=100)
    variables = serializers.DictField(required=False, default=dict)
    request_id = serializers.CharField(required=False, max_length=255)
    priority = serializers.IntegerField(required=False, min_value=0, max_value=10)
    metadata = serializers.DictField(required=False, default=dict)


def priority_level(priority: int) -> str:
    return next(level for floor, level in PRIORITY_LEVELS if priority >= floor)


def send(tenant: Tenant, body: dict) -> tuple[dict, bool]:
    """Accept an HNG send through AlertFlow's own; return HNG's envelope and whether it replayed."""
    fields = validated(HngNotificationSerializer, body)
    payload = {
        "recipient": fields["user_id"],
        "channels": [fields["notification_type"]],
        "template": fields["template_code"],
        "data": fields["variables"],
        "metadata": fields["metadata"],
    }
    if "priority" in fields:
        payload["priority"] = priority_level(fields["priority"])
    if "request_id" in fields:
        payload["idempotency_key"] = fields["request_id"]
    accepted = accept(tenant, payload)
    envelope = {
        "success": True,
        "data": {
            "notification_id": ID_PREFIX + str(accepted.notification.id),
            "status": "pending",
            "created_at": accepted.notification.created.isoformat().replace("+00:00", "Z"),
        },
        "message": "Notification queued successfully",
        "error": None,
        "meta": None,
    }
    return envelope, accepted.replayed


def hng_word(statuses: set[str]) -> str:
    """HNG's word for messages in `statuses`: pending while any is on its way (or none exists yet),
    else delivered when any arrived, else failed."""
    if not statuses or statuses & PENDING:
        return "pending"
    return "delivered" if statuses & DELIVERED else "failed"


def is_hng_id(notification_id: str) -> bool:
    return notification_id.startswith(ID_PREFIX)


def status(tenant: Tenant, notification_id: str) -> dict:
    """HNG's status answer for `notif_<id>`; 404 for another tenant's or an unknown id."""
    try:
        pk = uuid.UUID(notification_id.removeprefix(ID_PREFIX))
    except ValueError:
        raise ApiError(404, "not_found", "No such resource.") from None
    notification = Notification.objects.filter(tenant=tenant, pk=pk).first()
    if notification is None:
        raise ApiError(404, "not_found", "No such resource.")
    messages = list(notification.messages.all())
    word = hng_word({message.status for message in messages})
    updated = max((message.updated for message in messages), default=notification.created)
    return {
        "success": True,
        "data": {
            "notification_id": notification_id,
            "status": word,
            "notification_type": notification.channels[0] if notification.channels else None,
            "created_at": notification.created.isoformat().replace("+00:00", "Z"),
            "updated_at": updated.isoformat().replace("+00:00", "Z"),
        },
        "message": "Notification found",
    }


class HngPreferencesSerializer(serializers.Serializer):
    email = serializers.BooleanField(required=False)
    push = serializers.BooleanField(required=False)


def preference_data(document: dict) -> dict:
    """What an HNG client reads: its two channel switches."""
    channels = document["channels"]
    return {"email": channels["email"], "push": channels["push"]}


def preference_changes(body: dict) -> dict:
    """The channel switches an HNG `PUT` sets; raises a 400 naming a bad or unknown field."""
    return dict(validated(HngPreferencesSerializer, body))


# --- templates ------------------------------------------------------------------------------

TEMPLATE_FIELDS = frozenset({"template_code", "name", "description", "subject", "body", "language"})


def hng_content(subject: str, body: str) -> dict:
    """HNG's one subject and body as AlertFlow content for its two channels, checked and compiled.

    Raises ValidationError naming `subject` or `body`, HNG's fields, not AlertFlow's."""
    content = {"email": {"subject": subject, "html": body}, "push": {"title": subject, "body": body}}
    try:
        return template_services.validate_content(content)
    except serializers.ValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        fields = {}
        for channel, names in (("email", ("subject", "html")), ("push", ("title", "body"))):
            problems = detail.get(channel) or {}
            for ours, theirs in zip(names, ("subject", "body"), strict=True):
                if isinstance(problems, dict) and ours in problems:
                    fields.setdefault(theirs, problems[ours])
        raise serializers.ValidationError(fields or {"body": ["Invalid template."]}) from None


def current_text(channels: dict) -> tuple[str | None, str | None]:
    """The subject and body an HNG client sees in a version's content."""
    email, push = channels.get("email") or {}, channels.get("push") or {}
    return email.get("subject") or push.get("title"), email.get("html") or email.get("text") or push.get("body")


class HngTemplateSerializer(serializers.Serializer):
    template_code = template_code_field()
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(allow_blank=True, required=False, default="")
    subject = serializers.CharField(max_length=500)
    body = serializers.CharField()
    language = LocaleField(default=template_services.DEFAULT_LOCALE)

    def validate(self, attrs):
        attrs["channels"] = hng_content(attrs.pop("subject"), attrs.pop("body"))
        attrs.setdefault("name", attrs["template_code"])
        return attrs


class HngTemplateUpdateSerializer(serializers.Serializer):
    template_code = template_code_field(required=False)
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(allow_blank=True, required=False)
    subject = serializers.CharField(max_length=500, required=False)
    body = serializers.CharField(required=False)
    language = LocaleField(required=False)


def template_envelope(version: TemplateVersion, message: str) -> dict:
    template = version.template
    subject, body = current_text(version.channels)
    return {
        "success": True,
        "data": {
            "id": version.pk,
            "template_code": template.code,
            "name": template.name,
            "description": template.description,
            "subject": subject,
            "body": body,
            "language": template.locale,
            "version": version.number,
            "is_active": template.deleted is None,
        },
        "message": message,
    }


def create_template(tenant: Tenant, body: dict, created_by: str) -> dict:
    """HNG's `POST /api/v1/templates`: version 1 of (template_code, language)."""
    fields = validated(HngTemplateSerializer, body, TEMPLATE_FIELDS)
    version = template_services.create_template(
        tenant,
        code=fields["template_code"],
        locale=fields["language"],
        name=fields["name"],
        description=fields["description"],
        channels=fields["channels"],
        created_by=created_by,
    )
    return template_envelope(version, "Template created successfully")


def update_template(templates, code: str, body: dict, default_locale: str, created_by: str) -> dict:
    """HNG's `PUT /api/v1/templates/{code}`: the next version of the template in `language`
    (else `?locale=`), with what the body names changed and the rest carried over.
    `templates` is the caller's tenant-scoped queryset of live templates."""
    fields = validated(HngTemplateUpdateSerializer, body, TEMPLATE_FIELDS)
    if fields.get("template_code", code) != code:
        raise ApiError(
            400,
            "validation_error",
            "template_code: differs from the path.",
            {"fields": {"template_code": ["Must be the code in the path."]}},
        )
    locale = fields.get("language", default_locale)
    template = templates.filter(code=code, locale=locale).first()
    if template is None:
        raise ApiError(404, "not_found", "No such template.")
    channels = template_services.get_version(template).channels
    subject, text = current_text(channels)
    changes = {name: fields[name] for name in ("name", "description") if name in fields}
    if "subject" in fields or "body" in fields:
        subject, text = fields.get("subject", subject), fields.get("body", text)
        if not subject or not text:
            missing = "subject" if not subject else "body"
            raise ApiError(
                400, "validation_error", f"{missing}: required.", {"fields": {missing: ["This field is required."]}}
            )
        changes["channels"] = {**channels, **hng_content(subject, text)}
    if not changes:
        raise ApiError(
            400,
            "validation_error",
            "Give at least one of name, description, subject, body.",
            {"fields": {"non_field_errors": ["Nothing to change."]}},
        )
    version = template_services.update_template(template, created_by=created_by, **changes)
    return template_envelope(version, "Template updated successfully")


class HngRenderSerializer(serializers.Serializer):
    template_code = template_code_field()
    variables = serializers.DictField(required=False, default=dict)
    language = LocaleField(required=False)
    version = serializers.IntegerField(min_value=1, required=False)


class HngRenderView(TenantScopedMixin, APIView):
    """`POST /api/v1/templates/render`: HNG's preview, `{"template_code", "variables", "language"}`
    -> the rendered `subject` and `body`. Renders nothing it would not send."""

    write_role = Role.MEMBER  # previewing changes nothing
    extra_error_statuses = {"post": {404}}

    @extend_schema(request=HngRenderSerializer, responses={200: dict}, operation_id="hng_templates_render")
    def post(self, request):
        fields = validated(HngRenderSerializer, request.data)
        version = template_services.resolve_version(
            self.tenant, fields["template_code"], fields.get("language"), fields.get("version")
        )
        channel = "email" if "email" in version.channels else "push"
        if channel not in version.channels:
            raise ApiError(
                400, "channel_not_defined", f"Template {fields['template_code']!r} has no email or push content."
            )
        context = template_services.build_context(self.tenant.name, {}, fields["variables"])
        result = template_services.render_channel(version.channels[channel], channel, context, cache_key=version.pk)
        subject, body = current_text({channel: result.fields})
        data = {
            "template_code": version.template.code,
            "language": version.template.locale,
            "version": version.number,
            "subject": subject,
            "body": body,
            "missing_variables": result.missing,
        }
        return Response({"success": True, "data": data, "message": "Template rendered successfully"})


# --- metrics --------------------------------------------------------------------------------

METRICS_WINDOW = timedelta(hours=24)


def metrics(tenant: Tenant) -> dict:
    """The tenant's messages of the last 24 hours by status and channel (one GROUP BY on the
    `message_by_status` index: tenant, status, created), in HNG's words, and this month's usage."""
    since = timezone.now() - METRICS_WINDOW
    rows = (
        Message.objects.filter(tenant=tenant, created__gte=since)
        .values_list("channel", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_status: dict[str, int] = {}
    by_channel: dict[str, dict[str, int]] = {}
    for channel, status_, n in rows:
        by_status[status_] = by_status.get(status_, 0) + n
        counts = by_channel.setdefault(channel, {"pending": 0, "delivered": 0, "failed": 0})
        counts[hng_word({status_})] += n
    totals = {word: sum(counts[word] for counts in by_channel.values()) for word in ("pending", "delivered", "failed")}
    return {
        "success": True,
        "data": {
            "window_hours": int(METRICS_WINDOW.total_seconds() // 3600),
            "total": sum(by_status.values()),
            **totals,
            "by_channel": by_channel,
            "by_status": by_status,
            "usage": usage_report(tenant),
        },
        "message": "Metrics retrieved successfully",
    }


class HngMetricsView(TenantScopedMixin, APIView):
    """`GET /api/v1/metrics`: the caller's tenant's counts, nobody else's."""

    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response(metrics(self.tenant))
