from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alertflow.choices import Channel, Priority
from preferences.models import Recipient, Topic
from preferences.serializers import RecipientSerializer
from templates_app.rendering import validate_content
from tenants.models import Category
from tenants.serializers import MAX_EXPIRES_IN, ChannelListField

from .models import DeliveryAttempt, Message, Notification
from .progress import Summary, message_counts, summarise
from .services import template_for

MAX_BULK_RECIPIENTS = 10_000


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

    def to_internal_value(self, data):
        if isinstance(data, str):
            if not data or len(data) > 128:
                raise serializers.ValidationError("A recipient id has 1 to 128 characters.")
            return data
        if isinstance(data, dict):
            if not isinstance(data.get("id"), str) or not data["id"]:
                raise serializers.ValidationError("A recipient object needs an `id`.")
            fields = {k: v for k, v in data.items() if k != "id"}
            checked = RecipientSerializer(data=fields, partial=True)
            checked.is_valid(raise_exception=True)
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


class SendSerializer(serializers.Serializer):
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
            category = Category.objects.filter(tenant=tenant, key=attrs["category"]).first()
            if category is None:
                raise serializers.ValidationError({"category": f"No category {attrs['category']!r}."})
        attrs["category"] = category
        attrs["channels"] = attrs.get("channels") or (category.channels if category else [])
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
