from django.db.models import F, Q
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from alertflow.views import TenantViewSet

from . import services, suppressions
from .models import Recipient, Suppression, Topic
from .serializers import (
    DeviceSerializer,
    PreferencesSerializer,
    RecipientFilterSerializer,
    RecipientSerializer,
    SubscribersResultSerializer,
    SubscribersSerializer,
    SuppressionFilterSerializer,
    SuppressionImportResultSerializer,
    SuppressionImportSerializer,
    SuppressionSerializer,
    TopicSerializer,
)


class RecipientViewSet(TenantViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin):
    """Recipients by the tenant's own id, with their devices and preferences as sub-resources.

    The sub-resources are actions here so that the recipient is always found through this
    viewset's tenant-scoped queryset (`get_object`): another tenant's recipient is a 404.
    """

    queryset = Recipient.objects.all()
    serializer_class = RecipientSerializer
    lookup_field = "external_id"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "put", "post", "delete", "head", "options"]
    extra_error_statuses = {"preferences.put": {503}}  # preferences_unavailable

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        params = RecipientFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        filters = params.validated_data
        if "email" in filters:
            queryset = queryset.filter(email=filters["email"])
        if "phone" in filters:
            queryset = queryset.filter(phone=filters["phone"])
        if "topic" in filters:
            # Same-tenant topics only; stating it lets PostgreSQL use topic_unique_key.
            queryset = queryset.filter(topics__key=filters["topic"], topics__tenant=F("tenant"))
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("email", str, description="Exact address (case-insensitive)"),
            OpenApiParameter("phone", str, description="Phone number (E.164)"),
            OpenApiParameter("topic", str, description="Key of a topic the recipient subscribes to"),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=RecipientSerializer, responses={200: RecipientSerializer, 201: RecipientSerializer})
    def update(self, request, *args, **kwargs):
        """Create or update: the fields sent are set, the others kept."""
        recipient, created = services.upsert_recipient(self.tenant, kwargs[self.lookup_field], request.data)
        return Response(
            self.get_serializer(recipient).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    def perform_destroy(self, instance):
        services.erase_recipient(instance)

    @extend_schema(methods=["GET"], responses={200: DeviceSerializer(many=True)})
    @extend_schema(methods=["POST"], request=DeviceSerializer, responses={200: DeviceSerializer, 201: DeviceSerializer})
    @action(detail=True, methods=["get", "post"], serializer_class=DeviceSerializer)
    def devices(self, request, external_id=None):
        recipient = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(recipient.devices.all())
            return self.get_paginated_response(DeviceSerializer(page, many=True).data)
        serializer = DeviceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device, created = services.register_device(recipient, **serializer.validated_data)
        return Response(
            DeviceSerializer(device).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(methods=["GET"], responses={200: DeviceSerializer})
    @extend_schema(methods=["DELETE"], responses={204: None})
    @action(
        detail=True,
        methods=["get", "delete"],
        url_path=r"devices/(?P<device_id>[0-9]+)",
        serializer_class=DeviceSerializer,
    )
    def device(self, request, external_id=None, device_id=None):
        device = get_object_or_404(self.get_object().devices.all(), pk=device_id)
        if request.method == "GET":
            return Response(DeviceSerializer(device).data)
        device.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=PreferencesSerializer, responses={200: PreferencesSerializer})
    @action(detail=True, methods=["get", "put"], serializer_class=PreferencesSerializer)
    def preferences(self, request, external_id=None):
        recipient = self.get_object()
        if request.method == "GET":
            return Response(services.get_preferences(recipient))
        context = {**self.get_serializer_context(), "recipient": recipient}
        serializer = PreferencesSerializer(data=request.data, context=context)
        serializer.is_valid(raise_exception=True)
        return Response(services.set_preferences(recipient, serializer.validated_data))


class TopicViewSet(
    TenantViewSet, mixins.ListModelMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin
):
    queryset = Topic.objects.all()
    serializer_class = TopicSerializer
    lookup_field = "key"
    lookup_value_regex = "[^/]+"

    @extend_schema(methods=["GET"], responses={200: RecipientSerializer(many=True)})
    @extend_schema(methods=["POST"], request=SubscribersSerializer, responses={200: SubscribersResultSerializer})
    @action(detail=True, methods=["get", "post"], serializer_class=SubscribersSerializer)
    def subscribers(self, request, key=None):
        topic = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(topic.subscribers)
            return self.get_paginated_response(RecipientSerializer(page, many=True).data)
        serializer = SubscribersSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(services.change_subscribers(topic, **serializer.validated_data))


class SuppressionViewSet(
    TenantViewSet, mixins.ListModelMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin
):
    """Addresses the tenant's messages must not go to (preferences/suppressions.py). Providers'
    answers add most of them (bounces, complaints, STOP, dead tokens); the tenant adds its own,
    one at a time or by import, and deletes them (a START over SMS lifts a STOP itself)."""

    queryset = Suppression.objects.select_related("category")
    serializer_class = SuppressionSerializer
    lookup_value_regex = "[0-9]+"
    extra_error_statuses = {"create": {503}, "bulk_import": {503}}  # suppressions_unavailable

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        params = SuppressionFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        filters = params.validated_data
        for name in ("channel", "reason"):
            if name in filters:
                queryset = queryset.filter(**{name: filters[name]})
        if "address" in filters:
            # As stored (normalised) when the channel says how; else as given or lower-cased.
            address = filters["address"]
            try:
                normalised = {suppressions.normalise(filters.get("channel", ""), address)}
            except suppressions.InvalidAddress:
                normalised = set()
            queryset = queryset.filter(Q(address__in={address, address.lower(), *normalised}))
        if "category" in filters:
            queryset = queryset.filter(category__key=filters["category"])
        if "created_after" in filters:
            queryset = queryset.filter(created__gte=filters["created_after"])
        if "created_before" in filters:
            queryset = queryset.filter(created__lt=filters["created_before"])
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("channel", str, enum=list(suppressions.ADDRESSED)),
            OpenApiParameter("address", str, description="An address (normalised like the stored ones)"),
            OpenApiParameter("category", str, description="A category key (global suppressions have none)"),
            OpenApiParameter("reason", str, enum=[r.value for r in Suppression.Reason]),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME, description="Inclusive"),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME, description="Exclusive"),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: SuppressionSerializer, 201: SuppressionSerializer})
    def create(self, request, *args, **kwargs):
        """Suppress one address; an address already suppressed the same way answers 200 with it."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        category = data["category"]
        added = suppressions.suppress(
            self.tenant.pk, data["channel"], [data["address"]], data["reason"], category.pk if category else None
        )
        if added.created:
            row = added.created[0]
            row.category = category
        else:
            row = self.get_queryset().get(channel=data["channel"], address=data["address"], category=category)
        return Response(
            self.get_serializer(row).data, status=status.HTTP_201_CREATED if added.created else status.HTTP_200_OK
        )

    @extend_schema(request=SuppressionImportSerializer, responses={200: SuppressionImportResultSerializer})
    @action(detail=False, methods=["post"], url_path="import", serializer_class=SuppressionImportSerializer)
    def bulk_import(self, request):
        """Suppress up to 10,000 addresses of one channel at once, all or none: every address is
        checked first, and one that is not valid refuses the import (`invalid_address`, naming
        its index). Addresses already suppressed, or repeated, are counted as `existing`."""
        serializer = SuppressionImportSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        category = data["category"]
        added = suppressions.suppress(
            self.tenant.pk, data["channel"], data["addresses"], data["reason"], category.pk if category else None
        )
        existing = len(data["addresses"]) - len(added.created)
        return Response({"created": len(added.created), "existing": existing})
