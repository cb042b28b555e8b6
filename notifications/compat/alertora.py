"""Alertora (seed 000): `GET /preferences` and `POST /preferences`, its user preference service.

Keyed by Alertora's `recipient_id` (an external id, or an email address that becomes one on
`POST`), onto AlertFlow's preference document: `channels` as is, `notification_types` as
`categories`. `POST` updates what it names and keeps the rest, as Alertora's service did.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from alertflow.choices import Role
from alertflow.errors import ApiError
from alertflow.views import TenantScopedMixin
from preferences import services as preference_services
from preferences.models import Recipient
from preferences.serializers import PreferencesSerializer
from tenants.models import Tenant

from ..services import unknown_recipient
from . import refuse_unknown_fields


class AlertoraPreferencesSerializer(serializers.Serializer):
    recipient_id = serializers.CharField(max_length=320)
    channels = serializers.DictField(child=serializers.BooleanField(), required=False)
    notification_types = serializers.DictField(
        child=serializers.DictField(child=serializers.BooleanField()), required=False
    )


def find_recipient(tenant: Tenant, recipient_id: str) -> Recipient | None:
    return Recipient.objects.filter(tenant=tenant, external_id=recipient_id).first()


def recipient_for_send(tenant: Tenant, recipient_id: str) -> Recipient:
    """Alertora clients send an external id or an email address (which becomes one)."""
    existing = find_recipient(tenant, recipient_id)
    if existing is not None:
        return existing
    if "@" in recipient_id:
        return preference_services.upsert_recipient(tenant, recipient_id, {"email": recipient_id})[0]
    raise unknown_recipient(recipient_id)


def alertora_document(recipient: Recipient, document: dict) -> dict:
    return {
        "recipient_id": recipient.external_id,
        "channels": document["channels"],
        "notification_types": document["categories"],
    }


class AlertoraPreferencesView(TenantScopedMixin, APIView):
    """`GET /preferences?recipient_id=...` and `POST /preferences`, as Alertora's clients call them."""

    write_role = Role.ADMIN
    extra_error_statuses = {"get": {404}, "post": {503}}  # 503: preferences_unavailable

    @extend_schema(
        parameters=[OpenApiParameter("recipient_id", str, required=True, description="The recipient's id or email.")],
        responses={200: AlertoraPreferencesSerializer},
    )
    def get(self, request):
        recipient_id = request.query_params.get("recipient_id")
        if not recipient_id:
            raise ApiError(
                400, "validation_error", "recipient_id: required.", {"fields": {"recipient_id": ["Required."]}}
            )
        recipient = find_recipient(self.tenant, recipient_id)
        if recipient is None:
            raise ApiError(404, "not_found", "No such resource.")
        return Response(alertora_document(recipient, preference_services.get_preferences(recipient)))

    @extend_schema(request=AlertoraPreferencesSerializer, responses={200: AlertoraPreferencesSerializer})
    def post(self, request):
        body = AlertoraPreferencesSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        refuse_unknown_fields(request.data, body.fields)
        fields = body.validated_data
        recipient = recipient_for_send(self.tenant, fields["recipient_id"])
        document = preference_services.get_preferences(recipient)
        merged = {
            "channels": {**document["channels"], **fields.get("channels", {})},
            "categories": {**document["categories"], **fields.get("notification_types", {})},
            "quiet_hours": document["quiet_hours"],
        }
        preferences = PreferencesSerializer(data=merged, context={"tenant": self.tenant, "recipient": recipient})
        if not preferences.is_valid():
            errors = {("notification_types" if k == "categories" else k): v for k, v in preferences.errors.items()}
            name = next(iter(errors))
            raise ApiError(400, "validation_error", f"{name}: invalid.", {"fields": errors})
        return Response(
            alertora_document(recipient, preference_services.set_preferences(recipient, preferences.validated_data))
        )
