"""The HNG distributed notification system (seed 002): its API gateway's send and status.

`POST /api/v1/notifications` with `notification_type`, `user_id`, `template_code`, `variables`,
`request_id`, `priority` (0-10) and `metadata` becomes AlertFlow's send of template
`template_code` to recipient `user_id` on channel `notification_type`. The answer is HNG's
envelope; its `notification_id` is `notif_` + the AlertFlow notification id, which tells
`GET /api/v1/notifications/{id}` to answer in HNG's words too. Its user service's
`GET/PUT /api/v1/users/{id}/preferences` reads and switches the recipient's email and push channels.
"""

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from alertflow.choices import Priority, Role
from alertflow.errors import ApiError
from alertflow.views import TenantScopedMixin
from preferences import services as preference_services
from preferences.models import Recipient
from preferences.serializers import PreferencesSerializer
from tenants.models import Tenant

from .. import services
from ..models import Message, Notification
from ..serializers import SendSerializer
from . import refuse_unknown_fields

ID_PREFIX = "notif_"

# HNG routes 0-4 to its regular queue and 5-10 to its priority queue; AlertFlow has four levels.
PRIORITY_LEVELS = [(8, Priority.CRITICAL), (5, Priority.HIGH), (3, Priority.NORMAL), (0, Priority.LOW)]

# HNG clients know three status words.
PENDING = {Message.Status.SCHEDULED, Message.Status.QUEUED, Message.Status.SENDING, Message.Status.RETRYING}
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
    hng = HngNotificationSerializer(data=body)
    hng.is_valid(raise_exception=True)
    fields = hng.validated_data
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
    send = SendSerializer(data=payload, context={"tenant": tenant})
    send.is_valid(raise_exception=True)
    accepted = services.accept(tenant, send.validated_data)
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
    statuses = {message.status for message in messages}
    if not messages or statuses & PENDING:
        word = "pending"
    elif statuses & DELIVERED:
        word = "delivered"
    else:
        word = "failed"
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


def preferences_envelope(document: dict, message: str) -> dict:
    channels = document["channels"]
    return {"success": True, "data": {"email": channels["email"], "push": channels["push"]}, "message": message}


class HngUserPreferencesView(TenantScopedMixin, APIView):
    """`GET/PUT /api/v1/users/{id}/preferences`: HNG's `{"email", "push"}` switches are the
    recipient's email and push channel preferences; the rest of the document is kept."""

    write_role = Role.ADMIN
    extra_error_statuses = {"get": {404}, "put": {404}}

    def recipient(self, user_id: str) -> Recipient:
        recipient = Recipient.objects.filter(tenant=self.tenant, external_id=user_id).first()
        if recipient is None:
            raise ApiError(404, "not_found", "No such resource.")
        return recipient

    @extend_schema(responses={200: dict})
    def get(self, request, user_id):
        document = preference_services.get_preferences(self.recipient(user_id))
        return Response(preferences_envelope(document, "Preferences retrieved successfully"))

    @extend_schema(request=HngPreferencesSerializer, responses={200: dict})
    def put(self, request, user_id):
        recipient = self.recipient(user_id)
        body = HngPreferencesSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        refuse_unknown_fields(request.data, body.fields)
        document = preference_services.get_preferences(recipient)
        document["channels"].update(body.validated_data)
        preferences = PreferencesSerializer(data=document, context={"tenant": self.tenant})
        preferences.is_valid(raise_exception=True)
        updated = preference_services.set_preferences(recipient, preferences.validated_data)
        return Response(preferences_envelope(updated, "Preferences updated successfully"))
