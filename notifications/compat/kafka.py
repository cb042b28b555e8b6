"""The Kafka notification service (seed 003): its send, user preferences and templates.

`POST /api/v1/notifications` with `user_id`, `template_id`, `channels` and `data` is AlertFlow's
send of template `template_id` to recipient `user_id` on those channels with that data: the
same fields as AlertFlow's own but two, renamed. Its answer is AlertFlow's 202 body with the id
also as `notification_id`. `PUT /api/v1/users/{user_id}/preferences` `{"channels": {"sms":
false}}` switches the recipient's channels (what it leaves out is kept). Its templates are
AlertFlow templates coded `template_id`, one `subject` and `body` for every channel it names.
"""

from rest_framework import serializers

from preferences.models import Recipient
from templates_app import services as template_services
from tenants.models import Tenant

from . import accept, template_code_field, validated

# The channels the Kafka service sends on; AlertFlow's in-app inbox is not one of them.
CHANNELS = ["push", "sms", "email"]


class KafkaNotificationSerializer(serializers.Serializer):
    user_id = serializers.CharField(max_length=255)
    template_id = serializers.CharField(max_length=64)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=CHANNELS), min_length=1)
    data = serializers.DictField(required=False, default=dict)


def send(tenant: Tenant, body: dict) -> tuple[dict, bool]:
    """Accept a Kafka send through AlertFlow's own; return the 202 body and whether it replayed."""
    fields = validated(KafkaNotificationSerializer, body)
    payload = {
        "recipient": fields["user_id"],
        "channels": list(dict.fromkeys(fields["channels"])),
        "template": fields["template_id"],
        "data": fields["data"],
    }
    accepted = accept(tenant, payload)
    return {"notification_id": accepted.body["id"], **accepted.body}, accepted.replayed


# --- preferences ----------------------------------------------------------------------------


class KafkaPreferencesSerializer(serializers.Serializer):
    user_id = serializers.CharField(max_length=255, required=False)
    channels = serializers.DictField(child=serializers.BooleanField())


def preference_fields(recipient: Recipient, document: dict) -> dict:
    """What a Kafka client reads: the user and every channel's switch."""
    return {"user_id": recipient.external_id, "channels": document["channels"]}


def preference_changes(recipient: Recipient, body: dict) -> dict:
    """The channel switches a Kafka `PUT` sets; raises ValidationError naming a bad field."""
    fields = validated(KafkaPreferencesSerializer, body)
    if fields.get("user_id", recipient.external_id) != recipient.external_id:
        raise serializers.ValidationError({"user_id": ["Must be the user in the path."]})
    return fields["channels"]


# --- templates ------------------------------------------------------------------------------

TEMPLATE_FIELDS = frozenset({"template_id", "name", "subject", "body", "channels"})


def kafka_content(subject: str, body: str, channels: list[str]) -> dict:
    """One subject and body as AlertFlow content for each channel named (sms has no subject)."""
    shapes = {
        "email": {"subject": subject, "text": body},
        "sms": {"text": body},
        "push": {"title": subject, "body": body},
    }
    content = {channel: shapes[channel] for channel in channels}
    try:
        return template_services.validate_content(content)
    except serializers.ValidationError as exc:
        # The problem is in the subject or the body the client sent, whichever channel found it.
        text = str(exc.detail)
        field = "subject" if "subject" in text or "title" in text else "body"
        raise serializers.ValidationError({field: [text]}) from None


class KafkaTemplateSerializer(serializers.Serializer):
    template_id = template_code_field()
    name = serializers.CharField(max_length=200, required=False)
    subject = serializers.CharField(max_length=500, required=False)
    body = serializers.CharField()
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=CHANNELS), min_length=1, required=False, default=CHANNELS
    )

    def validate(self, attrs):
        attrs.setdefault("name", attrs["template_id"])
        attrs.setdefault("subject", attrs["name"])
        attrs["channels"] = list(dict.fromkeys(attrs["channels"]))
        return attrs


class KafkaTemplateAnswerSerializer(serializers.Serializer):
    template_id = serializers.CharField()
    name = serializers.CharField()
    subject = serializers.CharField()
    body = serializers.CharField()
    channels = serializers.ListField(child=serializers.CharField())
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()


def create_template(tenant: Tenant, body: dict, created_by: str) -> dict:
    """The Kafka service's `POST /api/v1/templates`: template `template_id`, version 1."""
    fields = validated(KafkaTemplateSerializer, body, TEMPLATE_FIELDS)
    version = template_services.create_template(
        tenant,
        code=fields["template_id"],
        locale=tenant.default_locale or template_services.DEFAULT_LOCALE,
        name=fields["name"],
        description="",
        channels=kafka_content(fields["subject"], fields["body"], fields["channels"]),
        created_by=created_by,
    )
    return {
        "template_id": version.template.code,
        "name": version.template.name,
        "subject": fields["subject"],
        "body": fields["body"],
        "channels": fields["channels"],
        "version": version.number,
        "created_at": version.created.isoformat().replace("+00:00", "Z"),
    }
