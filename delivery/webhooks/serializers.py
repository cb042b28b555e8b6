from datetime import timedelta

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alertflow import outbound
from alertflow.errors import ApiError

from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, new_secret, plain_http_refused
from .types import EVENT_TYPES, SUBSCRIBABLE

DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """A tenant's webhook endpoint. `secret` is answered once, to the create; it signs every
    delivery (`X-AlertFlow-Signature`) and is never shown again (`rotate-secret` makes another)."""

    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=SUBSCRIBABLE), min_length=1, max_length=len(SUBSCRIBABLE)
    )
    secret = serializers.SerializerMethodField()
    previous_secret_expires = serializers.DateTimeField(source="previous_expires", read_only=True, allow_null=True)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "url", "events", "description", "enabled", "disabled_reason", "secret", "previous_secret_expires",
            "created", "updated",
        ]  # fmt: skip
        read_only_fields = ["id", "disabled_reason", "created", "updated"]

    @extend_schema_field(
        serializers.CharField(
            allow_null=True, help_text="The signing secret: in the answer to the create only, null afterwards."
        )
    )
    def get_secret(self, endpoint: WebhookEndpoint) -> str | None:
        return getattr(endpoint, "revealed_secret", None)

    def validate_url(self, url: str) -> str:
        # Checked again at every POST (relay.post): this answers the tenant now, with the field.
        try:
            outbound.check_url(url)
        except outbound.AddressNotAllowed as exc:
            raise ApiError(400, "address_not_allowed", f"url: {exc}", {"field": "url"}) from None
        refused = plain_http_refused(url)
        if refused is not None:
            raise ApiError(400, "https_required", f"url: {refused}.", {"field": "url"})
        return url

    def validate_events(self, events: list[str]) -> list[str]:
        return sorted(set(events))

    def create(self, validated_data: dict) -> WebhookEndpoint:
        endpoint = WebhookEndpoint(**validated_data)
        secret = new_secret()
        endpoint.set_secret(secret)
        endpoint.save()
        endpoint.revealed_secret = secret
        return endpoint

    def update(self, endpoint: WebhookEndpoint, validated_data: dict) -> WebhookEndpoint:
        if "enabled" in validated_data and validated_data["enabled"] != endpoint.enabled:
            # Switched by the tenant: whatever disabled it before is forgotten, the failure streak
            # starts again from nothing.
            endpoint.disabled_reason, endpoint.failing_since, endpoint.failed_deliveries = "", None, 0
        return super().update(endpoint, validated_data)


class WebhookRotateSecretSerializer(serializers.Serializer):
    overlap_seconds = serializers.IntegerField(
        min_value=0,
        max_value=int(MAX_OVERLAP.total_seconds()),
        default=int(DEFAULT_OVERLAP.total_seconds()),
        help_text="How long the previous secret keeps signing too (a second `v1=`); 0 ends it now.",
    )


class WebhookRotatedSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret, shown this once.")
    previous_secret_expires = serializers.DateTimeField(allow_null=True)


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["started", "duration_ms", "status_code", "response", "error"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.UUIDField(read_only=True)
    payload = serializers.JSONField(source="event.payload", read_only=True, help_text="The body POSTed.")
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True, help_text="Every try, newest first.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "event_id", "event_type", "status", "attempts", "next_attempt", "last_status_code", "created",
            "updated", "delivered", "payload", "attempt_log",
        ]  # fmt: skip
        read_only_fields = fields


class WebhookDeliveryFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, required=False)
    event_type = serializers.ChoiceField(choices=EVENT_TYPES, required=False)


class WebhookReplaySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[WebhookDelivery.Status.FAILED, WebhookDelivery.Status.DELIVERED],
        default=WebhookDelivery.Status.FAILED,
        help_text="Replay the deliveries in this status.",
    )
    since = serializers.DateTimeField(required=False, help_text="Only deliveries created at or after this time.")
    event_type = serializers.ChoiceField(choices=EVENT_TYPES, required=False)


class WebhookReplayedSerializer(serializers.Serializer):
    replayed = serializers.IntegerField(help_text="Deliveries made due again now.")
