"""The recipient's side of the in-app inbox (recipient credentials), and the tenant's side of
getting those credentials (API key): recipient tokens and the inbox secret.

The inbox endpoints find everything through the authenticated recipient (`request.user`), so
another recipient's item, or another tenant's, is a 404 like one that never existed.
"""

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from alertflow.choices import Role
from alertflow.errors import ApiError
from alertflow.pagination import CursorPagination
from alertflow.views import TenantScopedMixin
from preferences import services as preference_services
from preferences.models import Recipient
from preferences.serializers import PreferencesSerializer
from tenants.models import Category

from . import inbox
from .inbox_auth import InboxReader, RecipientAuthentication, inbox_secret, issue_token, rotate_inbox_secret
from .models import InboxItem

# --- The tenant's side (API key) ---------------------------------------------------------------


class RecipientTokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True)
    ws_url = serializers.CharField(read_only=True)


class RecipientTokenView(TenantScopedMixin, generics.GenericAPIView):
    """`POST /api/v1/recipients/{external_id}/token`: a short-lived token for the recipient's
    inbox and websocket, and where the websocket is."""

    queryset = Recipient.objects.all()
    lookup_field = "external_id"
    serializer_class = RecipientTokenSerializer  # OPTIONS describes the answer from it

    @extend_schema(request=None, responses={201: RecipientTokenSerializer})
    def post(self, request, external_id):
        token, expires = issue_token(self.get_object())
        body = {"token": token, "expires_at": inbox.iso(expires), "ws_url": settings.ALERTFLOW_WS_URL}
        return Response(body, status=status.HTTP_201_CREATED)


class InboxSecretView(APIView):
    """`GET /api/v1/inbox-secret` shows the tenant's inbox secret (created on first use);
    `POST` rotates it, which invalidates every HMAC computed with the old one. Owners only."""

    read_role = Role.OWNER
    write_role = Role.OWNER
    secret_response = inline_serializer("InboxSecret", {"secret": serializers.CharField()})

    @extend_schema(responses={200: secret_response})
    def get(self, request):
        return Response({"secret": inbox_secret(request.user.tenant)})

    @extend_schema(request=None, responses={201: secret_response})
    def post(self, request):
        return Response({"secret": rotate_inbox_secret(request.user.tenant)}, status=status.HTTP_201_CREATED)


# --- The recipient's side (recipient token or HMAC) --------------------------------------------


class IsInboxReader(permissions.BasePermission):
    message = "Recipient credentials required."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, InboxReader)


class RecipientView(APIView):
    authentication_classes = [RecipientAuthentication]
    permission_classes = [IsInboxReader]

    @property
    def recipient(self) -> Recipient:
        return self.request.user.recipient


class InboxCursor(CursorPagination):
    ordering = ("-created", "-message_id")
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


def tag_list(value: str) -> list[str]:
    return [tag.strip() for tag in value.split(",") if tag.strip()]


class InboxFilterSerializer(serializers.Serializer):
    unread = serializers.BooleanField(required=False, allow_null=True, default=None)
    unseen = serializers.BooleanField(required=False, allow_null=True, default=None)
    archived = serializers.BooleanField(required=False, default=False)
    category = serializers.CharField(required=False, max_length=64)
    tags = serializers.CharField(required=False, max_length=1000, help_text="Comma-separated; items carry them all.")

    def validate_tags(self, value):
        return tag_list(value)


class InboxItemSerializer(serializers.Serializer):
    """The documented shape of an item (`inbox.item_json` writes it)."""

    id = serializers.UUIDField()
    title = serializers.CharField()
    body = serializers.CharField()
    action_url = serializers.CharField()
    category = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    data = serializers.DictField()
    created_at = serializers.DateTimeField()
    seen_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True)
    snoozed_until = serializers.DateTimeField(allow_null=True)


class InboxView(RecipientView):
    """`GET /api/v1/inbox`: the recipient's feed, newest first, with exact unread and unseen counts."""

    extra_error_statuses = {"get": {404}}  # a cursor that names no page

    @extend_schema(
        parameters=[
            InboxFilterSerializer,
            OpenApiParameter("cursor", str, description="From `next` or `previous`"),
            OpenApiParameter("page_size", int, description="At most 100"),
        ],
        responses={
            200: inline_serializer(
                "InboxPage",
                {
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "unread_count": serializers.IntegerField(),
                    "unseen_count": serializers.IntegerField(),
                    "results": InboxItemSerializer(many=True),
                },
            )
        },
    )
    def get(self, request):
        filters = InboxFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        items = inbox.feed(self.recipient, **filters.validated_data)
        paginator = InboxCursor()
        page = paginator.paginate_queryset(items, request, view=self)
        counted = inbox.counts(self.recipient.pk)
        return Response(
            {
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "unread_count": counted["count"],
                "unseen_count": counted["unseen_count"],
                "results": [inbox.item_json(item) for item in page],
            }
        )


class SnoozeSerializer(serializers.Serializer):
    until = serializers.DateTimeField()

    def validate_until(self, value):
        now = timezone.now()
        if value <= now:
            raise serializers.ValidationError("Must be in the future.")
        if value > now + inbox.MAX_SNOOZE:
            raise serializers.ValidationError(f"At most {inbox.MAX_SNOOZE.days} days ahead.")
        return value


def item_response(item: InboxItem, recipient: Recipient) -> Response:
    counted = inbox.counts(recipient.pk)
    return Response(
        {"item": inbox.item_json(item), "unread_count": counted["count"], "unseen_count": counted["unseen_count"]}
    )


class InboxActionView(RecipientView):
    """`POST /api/v1/inbox/{id}/read|unread|seen|archive|unarchive|snooze` (`snooze` takes `until`)."""

    @extend_schema(
        request=SnoozeSerializer,
        responses={
            200: inline_serializer(
                "InboxActionResult",
                {
                    "item": InboxItemSerializer(),
                    "unread_count": serializers.IntegerField(),
                    "unseen_count": serializers.IntegerField(),
                },
            )
        },
    )
    def post(self, request, message_id, action):
        until = None
        if action == "snooze":
            body = SnoozeSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            until = body.validated_data["until"]
        item = inbox.act(self.recipient, message_id, action, until=until)
        if item is None:
            raise ApiError(404, "not_found", "No such item in this inbox.")
        return item_response(item, self.recipient)


class BulkSerializer(serializers.Serializer):
    category = serializers.CharField(required=False, max_length=64)


class InboxBulkView(RecipientView):
    """`POST /api/v1/inbox/read-all` and `/archive-all`, optionally `{"category": key}`."""

    action = ""

    @extend_schema(
        request=BulkSerializer,
        responses={
            200: inline_serializer(
                "InboxBulkResult",
                {
                    "updated": serializers.IntegerField(),
                    "unread_count": serializers.IntegerField(),
                    "unseen_count": serializers.IntegerField(),
                },
            )
        },
    )
    def post(self, request):
        body = BulkSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        updated = inbox.act_all(self.recipient, self.action, category=body.validated_data.get("category"))
        counted = inbox.counts(self.recipient.pk)
        return Response({"updated": updated, "unread_count": counted["count"], "unseen_count": counted["unseen_count"]})


class InboxPreferencesView(RecipientView):
    """`GET/PUT /api/v1/inbox/preferences`: the recipient's own preferences, the same document as
    `/recipients/{id}/preferences`, plus `critical_categories`, which opt-outs never reach: a PUT
    that turns a channel off for one of them is refused."""

    extra_error_statuses = {"put": {403, 503}}  # a critical category turned off; preferences_unavailable

    def critical_categories(self) -> list[str]:
        return list(
            Category.objects.filter(tenant_id=self.recipient.tenant_id, critical=True).values_list("key", flat=True)
        )

    def document(self, preferences: dict) -> dict:
        return {**preferences, "critical_categories": self.critical_categories()}

    @extend_schema(responses={200: PreferencesSerializer})
    def get(self, request):
        return Response(self.document(preference_services.get_preferences(self.recipient)))

    @extend_schema(request=PreferencesSerializer, responses={200: PreferencesSerializer})
    def put(self, request):
        data = dict(request.data) if isinstance(request.data, dict) else request.data
        if isinstance(data, dict):
            data.pop("critical_categories", None)  # what GET showed may come back as is
        serializer = PreferencesSerializer(
            data=data, context={"tenant": self.recipient.tenant, "recipient": self.recipient}
        )
        serializer.is_valid(raise_exception=True)
        critical = set(self.critical_categories())
        refused = sorted(
            key
            for key, switches in serializer.validated_data.get("categories", {}).items()
            if key in critical and False in switches.values()
        )
        if refused:
            raise ApiError(
                403,
                "critical_category",
                f"{', '.join(refused)}: critical notifications cannot be turned off.",
                {"categories": refused},
            )
        return Response(self.document(preference_services.set_preferences(self.recipient, serializer.validated_data)))
