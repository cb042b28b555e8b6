from datetime import timedelta

from django.db import transaction
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from alertflow.choices import Role
from alertflow.errors import ApiError
from alertflow.views import TenantViewSet

from . import events, relay
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .serializers import (
    WebhookDeliveryFilterSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSerializer,
    WebhookReplayedSerializer,
    WebhookReplaySerializer,
    WebhookRotatedSecretSerializer,
    WebhookRotateSecretSerializer,
)
from .types import PING

UUID_PATTERN = r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"


class WebhookEndpointViewSet(
    TenantViewSet,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """A tenant's webhook endpoints, their deliveries and attempts, replays and secret rotation.

    Admins only, reads included: an endpoint's deliveries show every event's payload.
    """

    queryset = WebhookEndpoint.objects.all()
    serializer_class = WebhookEndpointSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    # A replay or a ping to an endpoint that is disabled: enable it first.
    extra_error_statuses = {"replay": {409}, "replay_matching": {409}, "ping": {409}}

    def disabled_conflict(self, endpoint: WebhookEndpoint) -> None:
        if not endpoint.enabled:
            raise ApiError(
                409,
                "endpoint_disabled",
                'The endpoint is disabled: PATCH it with {"enabled": true} first.',
                {"disabled_reason": endpoint.disabled_reason},
            )

    @extend_schema(request=WebhookRotateSecretSerializer, responses={200: WebhookRotatedSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """Make a new signing secret; the previous one also signs for `overlap_seconds` (default a day)."""
        body = WebhookRotateSecretSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with transaction.atomic():
            endpoint = get_object_or_404(self.get_queryset().select_for_update(), pk=self.get_object().pk)
            secret = endpoint.rotate(timedelta(seconds=body.validated_data["overlap_seconds"]))
            endpoint.save()
        return Response({"secret": secret, "previous_secret_expires": endpoint.previous_expires})

    def endpoint_deliveries(self, endpoint: WebhookEndpoint):
        return (
            WebhookDelivery.objects.filter(endpoint=endpoint)
            .select_related("event")
            .prefetch_related(Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("-started", "-id")))
        )

    @extend_schema(
        parameters=[WebhookDeliveryFilterSerializer],
        responses={200: WebhookDeliverySerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The endpoint's deliveries, newest first, each with every attempt (`?status=`, `?event_type=`)."""
        endpoint = self.get_object()
        filters = WebhookDeliveryFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        deliveries = self.endpoint_deliveries(endpoint).filter(**filters.validated_data)
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(
        request=None,
        responses={202: WebhookDeliverySerializer},
        parameters=[OpenApiParameter("delivery_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
    )
    @action(detail=True, methods=["post"], url_path=rf"deliveries/(?P<delivery_id>{UUID_PATTERN})/replay")
    def replay(self, request, pk=None, delivery_id=None):
        """Send one delivery again (same event id), with a fresh budget of tries."""
        endpoint = self.get_object()
        self.disabled_conflict(endpoint)
        deliveries = self.endpoint_deliveries(endpoint)
        delivery = get_object_or_404(deliveries, pk=delivery_id)
        if delivery.status == WebhookDelivery.Status.PENDING:
            raise ApiError(409, "already_pending", "This delivery is already waiting to be sent.")
        relay.replayable(WebhookDelivery.objects.filter(pk=delivery.pk))
        return Response(WebhookDeliverySerializer(deliveries.get(pk=delivery.pk)).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=WebhookReplaySerializer, responses={202: WebhookReplayedSerializer})
    @action(detail=True, methods=["post"], url_path="replay")
    def replay_matching(self, request, pk=None):
        """Send again every delivery of the endpoint in `status` (default `failed`), created `since`."""
        endpoint = self.get_object()
        self.disabled_conflict(endpoint)
        body = WebhookReplaySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        filters = {"status": body.validated_data["status"]}
        if "since" in body.validated_data:
            filters["created__gte"] = body.validated_data["since"]
        if "event_type" in body.validated_data:
            filters["event_type"] = body.validated_data["event_type"]
        replayed = relay.replayable(WebhookDelivery.objects.filter(endpoint=endpoint, **filters))
        return Response({"replayed": replayed}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"], url_path="test")
    def ping(self, request, pk=None):
        """Send a `webhook.ping` event to this endpoint only."""
        endpoint = self.get_object()
        self.disabled_conflict(endpoint)
        with transaction.atomic():
            events.emit(endpoint.tenant_id, PING, {"endpoint_id": str(endpoint.pk)}, endpoints=[str(endpoint.pk)])
        delivery = self.endpoint_deliveries(endpoint).filter(event_type=PING).first()
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
