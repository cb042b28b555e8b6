from django.db.models import F
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from alertflow.views import TenantViewSet

from . import services
from .models import Recipient, Topic
from .serializers import (
    DeviceSerializer,
    PreferencesSerializer,
    RecipientFilterSerializer,
    RecipientSerializer,
    SubscribersResultSerializer,
    SubscribersSerializer,
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
        serializer = PreferencesSerializer(data=request.data, context=self.get_serializer_context())
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
