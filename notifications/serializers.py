import re
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alertflow.choices import Channel, Priority
from alertflow.serializers import ShallowCopiedFields
from preferences.models import Recipient, Topic
from preferences.serializers import RecipientSerializer, validate_timezone
from templates_app.rendering import validate_content
from tenants.models import Category
from tenants.serializers import MAX_EXPIRES_IN, ChannelListField, default_channels
from tenants.services import find_category, unknown_category

from . import campaigns
from .models import Campaign, CampaignRun, DeliveryAttempt, Message, Notification
from .progress import Summary, message_counts, summarise
from .services import template_for

MAX_BULK_RECIPIENTS = 10_000
# The key of RecipientTarget's contact serializer in a serializer's context.
CONTACT_FIELDS = "recipient_contact_fields"


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "A recipient's external id."},
            {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "string"}},
                "additionalProperties": True,
            },
        ]
    }
)
class RecipientTarget(serializers.Field):
    """A recipient: an external id, or an object with `id` and contact fields that upserts."""

    def contact_fields(self) -> RecipientSerializer:
        """The serializer of an object's contact fields: one per request, kept in the root
        serializer's context (the view's, new for each request; a serializer given none has an
        empty one of its own), so a bulk list's 10,000 objects build it once (building one
        deep-copies its fields, ~0.5 ms: 5 s of CPU for 10,000), and the field itself keeps
        nothing, so a serializer can take a shallow copy of it."""
        context = self.context
        serializer = context.get(CONTACT_FIELDS)
        if serializer is None:
            serializer = context[CONTACT_FIELDS] = RecipientSerializer(partial=True)
        return serializer

    def to_internal_value(self, data):
        if isinstance(data, str):
            if not data or len(data) > 128:
                raise serializers.ValidationError("A recipient id has 1 to 128 characters.")
            return data
        if isinstance(data, dict):
            if not isinstance(data.get("id"), str) or not data["id"]:
                raise serializers.ValidationError("A recipient object needs an `id`.")
            fields = {k: v for k, v in data.items() if k != "id"}
            self.contact_fields().run_validation(fields)
            return {"id": data["id"], **fields}
        raise serializers.ValidationError("Give a recipient id or an object with `id`.")

    def to_representation(self, value):
        return value


def unique_targets(targets: list) -> list:
    """A recipient listed twice in one bulk send gets one message: the first entry for each id
    is kept (an object that upserts contact fields wins over a plain id only if it came first)."""
    seen, unique = set(), []
    for target in targets:
        recipient_id = target["id"] if isinstance(target, dict) else target
        if recipient_id not in seen:
            seen.add(recipient_id)
            unique.append(target)
    return unique


class SendSerializer(ShallowCopiedFields, serializers.Serializer):
    recipient = RecipientTarget(required=False)
    recipients = serializers.ListField(
        child=RecipientTarget(), required=False, min_length=1, max_length=MAX_BULK_RECIPIENTS
    )
    topic = serializers.CharField(required=False, max_length=64)
    category = serializers.CharField(required=False, max_length=64)
    channels = ChannelListField(required=False, min_length=1)
    template = serializers.CharField(required=False, max_length=100)
    template_version = serializers.IntegerField(required=False, min_value=1)
    content = serializers.DictField(required=False)
    data = serializers.DictField(required=False, default=dict)
    metadata = serializers.DictField(required=False, default=dict)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    send_at = serializers.DateTimeField(required=False)
    expires_in = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_EXPIRES_IN,
        help_text="Seconds the messages may wait to be sent, from `send_at`; then they expire. "
        "Defaults to the category's, else the deployment's for the priority.",
    )
    idempotency_key = serializers.CharField(required=False, max_length=255)

    def validate(self, attrs):
        tenant = self.context["tenant"]
        audiences = [name for name in ("recipient", "recipients", "topic") if name in attrs]
        if len(audiences) != 1:
            raise serializers.ValidationError(
                {"recipient": "Give exactly one of `recipient`, `recipients` or `topic`."}
            )
        if ("template" in attrs) == ("content" in attrs):
            raise serializers.ValidationError({"template": "Give exactly one of `template` or `content`."})
        if "template_version" in attrs and "template" not in attrs:
            raise serializers.ValidationError({"template_version": "Only with `template`."})

        category = None
        if "category" in attrs:
            category = find_category(tenant, attrs["category"])
            if category is None:
                raise unknown_category(attrs["category"])
        attrs["category"] = category
        attrs["channels"] = attrs.get("channels") or (default_channels(category) if category else [])
        if not attrs["channels"]:
            raise serializers.ValidationError({"channels": "Name the channels, or a category that has defaults."})
        attrs["priority"] = attrs.get("priority") or (category.priority if category else Priority.NORMAL)

        if "content" in attrs:
            try:
                attrs["content"] = validate_content(attrs["content"])
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"content": exc.detail}) from None
            missing = [c for c in attrs["channels"] if c not in attrs["content"]]
            if missing:
                raise serializers.ValidationError({"content": f"No content for channel(s): {', '.join(missing)}."})
        else:
            self._check_template(tenant, attrs)

        if "topic" in attrs:
            topic = Topic.objects.filter(tenant=tenant, key=attrs["topic"]).first()
            if topic is None:
                raise serializers.ValidationError({"topic": f"No topic {attrs['topic']!r}."})
            attrs["topic"] = topic
        if "recipients" in attrs:
            attrs["recipients"] = unique_targets(attrs["recipients"])
            self._check_bulk_ids(tenant, attrs["recipients"])
        if attrs.get("send_at") and attrs["send_at"] > timezone.now() + timedelta(days=366):
            raise serializers.ValidationError({"send_at": "At most a year ahead."})
        return attrs

    @staticmethod
    def _check_template(tenant, attrs):
        version = template_for(tenant, attrs["template"], tenant.default_locale, attrs.get("template_version"))
        if version is None:
            wanted = f"version {attrs['template_version']} of " if attrs.get("template_version") else ""
            raise serializers.ValidationError({"template": f"No {wanted}template {attrs['template']!r}."})
        missing = [c for c in attrs["channels"] if c not in version.channels]
        if missing:
            raise serializers.ValidationError(
                {"channels": f"Template {attrs['template']!r} has no content for: {', '.join(missing)}."}
            )

    @staticmethod
    def _check_bulk_ids(tenant, targets):
        ids = {t for t in targets if isinstance(t, str)}
        known = set(Recipient.objects.filter(tenant=tenant, external_id__in=ids).values_list("external_id", flat=True))
        unknown = sorted(ids - known)
        if unknown:
            raise serializers.ValidationError({"recipients": f"Unknown recipient id(s): {', '.join(unknown[:100])}."})


class RescheduleSerializer(serializers.Serializer):
    send_at = serializers.DateTimeField()


class ReplaySerializer(serializers.Serializer):
    """Which dead letters to replay; with no filter, all the failed ones (up to the per-call cap)."""

    status = serializers.ChoiceField(
        choices=[Message.Status.FAILED, Message.Status.EXPIRED], default=Message.Status.FAILED
    )

    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    category = serializers.CharField(required=False, max_length=64)
    error = serializers.CharField(required=False, max_length=200)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class AlertoraNotifySerializer(serializers.Serializer):
    """The original Alertora `POST /notify` body."""

    recipient_id = serializers.CharField(max_length=320)
    notification_type = serializers.CharField(max_length=64)
    channel = serializers.ChoiceField(choices=Channel.choices)
    content = serializers.CharField(max_length=100_000)


class AttemptSerializer(serializers.ModelSerializer):
    time = serializers.DateTimeField(source="started")

    class Meta:
        model = DeliveryAttempt
        fields = ["time", "provider", "outcome", "duration_ms", "error", "provider_message_id"]


class MessageSerializer(serializers.ModelSerializer):
    recipient = serializers.CharField(source="recipient.external_id")
    notification = serializers.UUIDField(source="notification_id")
    attempts = AttemptSerializer(source="delivery_attempts", many=True)
    created_at = serializers.DateTimeField(source="created")

    class Meta:
        model = Message
        fields = [
            "id", "notification", "recipient", "channel", "status", "reason", "priority", "provider",
            "provider_message_id", "error", "next_attempt", "expires_at", "created_at", "queued", "sent", "delivered",
            "read", "failed", "updated", "attempts",
        ]  # fmt: skip


class NotificationSerializer(serializers.ModelSerializer):
    """A notification with where it is: `status` summarises its messages (notifications/progress.py)
    and `counts` gives them by status. The counts of a page come from one query when the view
    puts them in the context as `message_counts`; otherwise each notification asks for its own."""

    category = serializers.CharField(source="category.key", default=None, allow_null=True)  # null: no category
    created_at = serializers.DateTimeField(source="created")
    status = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = [
            "id", "status", "counts", "audience", "category", "priority", "channels", "template",
            "template_version", "topic", "send_at", "expires_in", "metadata", "created_at", "cancelled",
        ]  # fmt: skip

    def _counts(self, notification) -> dict:
        known = self.context.setdefault("message_counts", {})
        if notification.pk not in known:
            known.update(message_counts([notification.pk]))
        return known.get(notification.pk, {})

    @extend_schema_field(serializers.ChoiceField(choices=Summary.choices))
    def get_status(self, notification) -> str:
        return summarise(notification, self._counts(notification))

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "integer"}})
    def get_counts(self, notification) -> dict:
        return self._counts(notification)


# The detail view lists this many messages; the rest are at /api/v1/messages?notification=<id>.
DETAIL_MESSAGE_LIMIT = 100


class NotificationDetailSerializer(NotificationSerializer):
    messages = serializers.SerializerMethodField()

    class Meta(NotificationSerializer.Meta):
        fields = [*NotificationSerializer.Meta.fields, "messages"]

    def get_messages(self, notification) -> list:
        messages = (
            notification.messages.select_related("recipient")
            .prefetch_related("delivery_attempts")
            .order_by("created", "id")[:DETAIL_MESSAGE_LIMIT]
        )
        return MessageSerializer(messages, many=True).data


class CampaignSerializer(serializers.ModelSerializer):
    """A campaign: what it sends (template, category, channels, data), to whom (`audience`),
    when (`schedule`) and how fast (`rate`). Validation names the field at fault."""

    category = serializers.CharField(source="category.key", required=False, allow_null=True, max_length=64)
    channels = ChannelListField(required=False, min_length=1)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    rate = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000)
    next_run_at = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(source="created", read_only=True)
    updated_at = serializers.DateTimeField(source="updated", read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "id", "name", "template", "template_version", "category", "channels", "priority", "data",
            "audience", "schedule", "rate", "paused", "next_run_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["id"]

    def get_next_run_at(self, campaign) -> datetime | None:
        return campaigns.next_run(campaign)

    def validate_audience(self, value):
        tenant = self.context["tenant"]
        if not isinstance(value, dict) or len(value) != 1:
            raise serializers.ValidationError(
                'One of {"topic": key}, {"all": true}, {"recipients": [ids]} or {"filter": {field: value}}.'
            )
        ((kind, spec),) = value.items()
        if kind == "topic":
            if not isinstance(spec, str) or not Topic.objects.filter(tenant=tenant, key=spec).exists():
                raise serializers.ValidationError(f"No topic {spec!r}.")
        elif kind == "all":
            if spec is not True:
                raise serializers.ValidationError('Write {"all": true}.')
        elif kind == "recipients":
            if not isinstance(spec, list) or not 1 <= len(spec) <= MAX_BULK_RECIPIENTS:
                raise serializers.ValidationError(f"A list of 1 to {MAX_BULK_RECIPIENTS} recipient ids.")
            if not all(isinstance(i, str) and 0 < len(i) <= 128 for i in spec):
                raise serializers.ValidationError("Recipient ids are strings of 1 to 128 characters.")
            SendSerializer._check_bulk_ids(tenant, spec)
            value = {"recipients": list(dict.fromkeys(spec))}
        elif kind == "filter":
            self._check_filter(spec)
        else:
            raise serializers.ValidationError(f"Unknown audience {kind!r}: topic, all, recipients or filter.")
        return value

    @staticmethod
    def _check_filter(spec):
        if not isinstance(spec, dict) or not spec:
            raise serializers.ValidationError("A filter is an object of recipient fields and values.")
        for field, value in spec.items():
            path = field.split(".")
            if path[0] == "data":
                if len(path) < 2 or not all(DATA_KEY.fullmatch(part) for part in path[1:]):
                    raise serializers.ValidationError(
                        f"{field!r}: write data.<key> with letters, digits, - and single _."
                    )
            elif field not in campaigns.FILTER_FIELDS:
                raise serializers.ValidationError(
                    f"{field!r}: filter on {', '.join(sorted(campaigns.FILTER_FIELDS))} or data.<key>."
                )
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str | int | float | bool) for v in values):
                raise serializers.ValidationError(f"{field!r}: a string, number, boolean, or a list of them.")

    def validate_schedule(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError('{"cron": ..., "timezone": ...} or {"at": ISO date-time}.')
        if "at" in value:
            if set(value) != {"at"}:
                raise serializers.ValidationError('A one-off schedule is {"at": ISO date-time} alone.')
            at = serializers.DateTimeField().to_internal_value(value["at"])
            if at.tzinfo is None:
                at = timezone.make_aware(at, UTC)
            if at > timezone.now() + timedelta(days=366):
                raise serializers.ValidationError({"at": ["At most a year ahead."]})
            return {"at": at.astimezone(UTC).isoformat()}
        if set(value) != {"cron", "timezone"}:
            raise serializers.ValidationError('A recurring schedule is {"cron": ..., "timezone": ...}.')
        cron, zone = value["cron"], value["timezone"]
        if not isinstance(cron, str) or len(cron) > 100:
            raise serializers.ValidationError({"cron": ["A cron expression of five fields."]})
        try:
            campaigns.check_cron(cron)
        except ValueError as exc:
            raise serializers.ValidationError({"cron": [f"Invalid cron expression: {exc}"]}) from None
        if zone != campaigns.RECIPIENT_TIMEZONE:
            if not isinstance(zone, str) or not 0 < len(zone) <= 64:
                raise serializers.ValidationError({"timezone": ["An IANA timezone name, or recipient."]})
            try:
                validate_timezone(zone)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"timezone": exc.detail}) from None
        return {"cron": " ".join(cron.split()), "timezone": zone}

    def validate(self, attrs):
        tenant = self.context["tenant"]
        merged = {
            field: attrs.get(field, getattr(self.instance, field, None))
            for field in ("template", "template_version", "channels", "priority")
        }
        if "category" in attrs:
            key = (attrs.pop("category") or {}).get("key")
            category = Category.objects.filter(tenant=tenant, key=key).first() if key else None
            if key and category is None:
                raise unknown_category(key)
            attrs["category"] = category
        category = attrs.get("category", getattr(self.instance, "category", None))
        if not merged["channels"]:
            merged["channels"] = attrs["channels"] = default_channels(category) if category else []
        if not merged["channels"]:
            raise serializers.ValidationError({"channels": "Name the channels, or a category that has defaults."})
        if merged["template"] is None:
            raise serializers.ValidationError({"template": "This field is required."})
        check = {k: v for k, v in merged.items() if v is not None}
        SendSerializer._check_template(tenant, check)
        for field in ("audience", "schedule"):
            if self.instance is None and field not in attrs:
                raise serializers.ValidationError({field: "This field is required."})
        return attrs


# A key inside a recipient's `data` an audience filter may name. No `__`: the path becomes a
# Django lookup (`data__plan`), and `__` would let a tenant add lookups of its own.
DATA_KEY = re.compile(r"(?!.*__)[A-Za-z0-9_-]{1,64}")


class CampaignRunSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True)
    started_at = serializers.DateTimeField(source="started", read_only=True)
    finished_at = serializers.DateTimeField(source="finished", read_only=True)
    notification = serializers.UUIDField(source="notification_id", read_only=True)

    class Meta:
        model = CampaignRun
        fields = ["id", "campaign", "notification", "slot", "state", "audience_size", "started_at", "finished_at"]

    def to_representation(self, run):
        """With the run's progress; a list passes every run's message counts, read in one
        query, as `counts` in the context."""
        body = super().to_representation(run)
        counts = self.context.get("counts")
        body.update(campaigns.progress(run, counts.get(run.notification_id, {}) if counts is not None else None))
        return body
