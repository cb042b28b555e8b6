"""The FastAPI + RabbitMQ notification system (seed 004): its gateway, user and template services.

Its README lists paths only; the bodies are those of the HNG stage-4 contract it implements,
which HNG's adapter already speaks: `POST /api/v1/notifications/` (trailing slash) is HNG's send
and `POST/GET/PUT /api/v1/templates/{template_code}` HNG's templates. What is its own:
`GET /api/v1/notifications/{id}/status` (HNG's status answer at another path), and its user
service, `POST /api/v1/users/` `{"name", "email", "push_token", "preferences": {"email",
"push"}, "password"}` and `GET/PUT /api/v1/users/{user_id}`, onto recipients: a new user is a
recipient with a new UUID as its external id, `push_token` an FCM device, `preferences` its email
and push channel switches. `password` is accepted and dropped: recipients do not sign in to
AlertFlow (API keys do), and a password must not be stored where it is never checked.
"""

import uuid

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from alertflow.choices import Role
from alertflow.errors import ApiError
from alertflow.views import TenantScopedMixin
from preferences import services as preference_services
from preferences.models import Device, Recipient
from preferences.serializers import DeviceSerializer

from . import hng, validated


class UserPreferencesSerializer(serializers.Serializer):
    email = serializers.BooleanField()
    push = serializers.BooleanField()


class UserCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField(max_length=254)
    push_token = serializers.CharField(max_length=4096, required=False, allow_null=True, allow_blank=True)
    preferences = UserPreferencesSerializer(required=False)
    password = serializers.CharField(required=False, write_only=True)

    def validate_push_token(self, value):
        """An FCM token, checked as `POST /recipients/{id}/devices` checks one (no whitespace, at
        most MAX_TOKEN_BYTES: a longer one overflowed the unique token index, a 500)."""
        if not value:
            return value
        device = DeviceSerializer(data={"platform": Device.Platform.FCM, "token": value})
        if not device.is_valid():
            raise serializers.ValidationError(device.errors.get("token", device.errors))
        return device.validated_data["token"]


class UserUpdateSerializer(UserCreateSerializer):
    name = serializers.CharField(max_length=200, required=False)
    email = serializers.EmailField(max_length=254, required=False)


def envelope(data, message: str) -> dict:
    return {"success": True, "data": data, "error": None, "message": message, "meta": None}


def user_data(recipient: Recipient) -> dict:
    """What a client of its user service reads: the user, its push token and switches."""
    device = recipient.devices.filter(active=True, platform=Device.Platform.FCM).order_by("-created").first()
    channels = preference_services.get_preferences(recipient)["channels"]
    return {
        "id": recipient.external_id,
        "user_id": recipient.external_id,
        "name": recipient.name,
        "email": recipient.email,
        "push_token": device.token if device else None,
        "preferences": {"email": channels["email"], "push": channels["push"]},
        "created_at": recipient.created.isoformat().replace("+00:00", "Z"),
        "updated_at": recipient.updated.isoformat().replace("+00:00", "Z"),
    }


def save_user(tenant, external_id: str, fields: dict) -> Recipient:
    """Write the recipient, its push device and its switches in one transaction."""
    with transaction.atomic():
        contact = {name: fields[name] for name in ("name", "email") if name in fields}
        recipient, _ = preference_services.upsert_recipient(tenant, external_id, contact)
        if fields.get("push_token"):
            preference_services.register_device(recipient, Device.Platform.FCM, fields["push_token"])
        if "preferences" in fields:
            preference_services.switch_channels(recipient, fields["preferences"])
    return recipient


class UsersView(TenantScopedMixin, APIView):
    """`POST /api/v1/users/`: a new user is a new recipient."""

    write_role = Role.ADMIN
    extra_error_statuses = {"post": {409, 503}}  # 503: preferences_unavailable

    @extend_schema(request=UserCreateSerializer, responses={201: dict})
    def post(self, request):
        fields = validated(UserCreateSerializer, request.data)
        email = fields["email"].strip().lower()
        if Recipient.objects.filter(tenant=self.tenant, email=email).exists():
            # Its user service kept emails unique; AlertFlow does not, so the adapter checks.
            raise ApiError(409, "user_exists", "A user with this email already exists.", {"email": email})
        recipient = save_user(self.tenant, str(uuid.uuid4()), fields)
        return Response(envelope(user_data(recipient), "User created successfully"), status=status.HTTP_201_CREATED)


class UserView(TenantScopedMixin, APIView):
    """`GET/PUT /api/v1/users/{user_id}`: a recipient by its external id."""

    write_role = Role.ADMIN
    extra_error_statuses = {"get": {404}, "put": {404, 409, 503}}  # 503: preferences_unavailable

    def recipient(self, user_id: str) -> Recipient:
        recipient = Recipient.objects.filter(tenant=self.tenant, external_id=user_id).first()
        if recipient is None:
            raise ApiError(404, "not_found", "No such resource.")
        return recipient

    @extend_schema(responses={200: dict})
    def get(self, request, user_id):
        return Response(envelope(user_data(self.recipient(user_id)), "User retrieved successfully"))

    @extend_schema(request=UserUpdateSerializer, responses={200: dict})
    def put(self, request, user_id):
        recipient = self.recipient(user_id)
        fields = validated(UserUpdateSerializer, request.data)
        email = fields.get("email", "").strip().lower()
        if email and Recipient.objects.filter(tenant=self.tenant, email=email).exclude(pk=recipient.pk).exists():
            raise ApiError(409, "user_exists", "Another user has this email.", {"email": email})
        recipient = save_user(self.tenant, recipient.external_id, fields)
        return Response(envelope(user_data(recipient), "User updated successfully"))


class NotificationStatusView(TenantScopedMixin, APIView):
    """`GET /api/v1/notifications/{id}/status`: HNG's status answer (`pending`, `delivered`,
    `failed`), for the id its send answered (`notif_...`) or the bare notification id."""

    extra_error_statuses = {"get": {404}}

    @extend_schema(responses={200: dict})
    def get(self, request, notification_id):
        return Response(hng.status(self.tenant, notification_id))
