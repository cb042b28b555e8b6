import uuid

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from alertflow.choices import Role
from alertflow.errors import ApiError
from alertflow.pagination import CursorPagination
from alertflow.views import TenantScopedMixin, TenantViewSet

from . import analytics, campaigns, compat, lifecycle, services
from .compat import alertora, hng, kafka
from .models import Campaign, CampaignRun, Message, Notification
from .progress import message_counts
from .serializers import (
    AlertoraNotifySerializer,
    CampaignRunSerializer,
    CampaignSerializer,
    MessageSerializer,
    NotificationDetailSerializer,
    NotificationSerializer,
    ReplaySerializer,
    RescheduleSerializer,
    SendSerializer,
)


class HistoryPagination(CursorPagination):
    """Cursor pagination: these tables get big, and OFFSET over millions of rows does not scale."""

    ordering = ("-created", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def filter_history(queryset, params, *, category_lookup: str):
    """Filters shared by notifications and messages: `?recipient=&status=&channel=&category=
    &created_after=&created_before=`. `category_lookup` is where the category key lives."""
    lookups = {
        "recipient": "recipient__external_id",
        "status": "status",
        "channel": "channel",
        "category": category_lookup,
    }
    for param, lookup in lookups.items():
        if params.get(param):
            queryset = queryset.filter(**{lookup: params[param]})
    for param, lookup in (("created_after", "created__gte"), ("created_before", "created__lt")):
        if params.get(param):
            try:
                moment = parse_datetime(str(params[param]))
            except ValueError:  # well formed, but no such date or time (2026-02-30, 25:00)
                moment = None
            if moment is None:
                raise ApiError(
                    400, "validation_error", f"{param}: not an ISO 8601 date-time.", {"fields": {param: ["Invalid."]}}
                )
            queryset = queryset.filter(**{lookup: moment})
    return queryset


def filter_messages(queryset, params):
    queryset = filter_history(queryset, params, category_lookup="notification__category__key")
    if params.get("error"):
        queryset = queryset.filter(error__icontains=params["error"])
    return queryset


HISTORY_PARAMETERS = [
    OpenApiParameter(name, str, description=description)
    for name, description in [
        ("recipient", "A recipient's external id."),
        ("status", "A message status (`failed`, `expired`, `sent`, …)."),
        ("channel", "email, sms, push or inapp."),
        ("category", "A category key."),
        ("created_after", "ISO 8601 date-time (inclusive)."),
        ("created_before", "ISO 8601 date-time (exclusive)."),
    ]
]


class NotificationViewSet(TenantViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    queryset = Notification.objects.select_related("category")
    serializer_class = NotificationSerializer
    pagination_class = HistoryPagination
    extra_error_statuses = {"create": {404, 409, 422}, "partial_update": {409}, "cancel": {409}}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        params = self.request.query_params
        message_filters = {k: params[k] for k in ("recipient", "status", "channel") if params.get(k)}
        if message_filters:
            messages = filter_messages(Message.objects.filter(notification=OuterRef("pk")), message_filters)
            queryset = queryset.filter(Exists(messages))
        category_and_dates = {k: params[k] for k in ("category", "created_after", "created_before") if params.get(k)}
        return filter_history(queryset, category_and_dates, category_lookup="category__key")

    def get_serializer_class(self):
        return NotificationDetailSerializer if self.action == "retrieve" else NotificationSerializer

    @extend_schema(parameters=HISTORY_PARAMETERS)
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        # Every notification's message counts in one GROUP BY, not one query per row.
        context = {**self.get_serializer_context(), "message_counts": message_counts(n.pk for n in page)}
        return self.get_paginated_response(NotificationSerializer(page, many=True, context=context).data)

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="NotificationSend",
            serializers=[SendSerializer, hng.HngNotificationSerializer, kafka.KafkaNotificationSerializer],
            resource_type_field_name=None,
        ),
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        responses={202: dict},
    )
    def create(self, request):
        """AlertFlow's send; an HNG or Kafka-service body (see `compat.dialect_of`) goes through
        its adapter, and an HNG one is answered in HNG's words."""
        dialect = compat.dialect_of(request.data)
        if dialect != compat.ALERTFLOW:
            adapter = hng if dialect == compat.HNG else kafka
            body, replayed = adapter.send(self.tenant, request.data)
            return self._accepted(body, replayed)
        payload = dict(request.data) if isinstance(request.data, dict) else request.data
        header_key = request.headers.get("Idempotency-Key")
        if header_key:
            if isinstance(payload, dict) and payload.get("idempotency_key") not in (None, header_key):
                raise ApiError(400, "validation_error", "idempotency_key: differs from the Idempotency-Key header.")
            payload = {**payload, "idempotency_key": header_key} if isinstance(payload, dict) else payload
        serializer = SendSerializer(data=payload, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        accepted = services.accept(self.tenant, serializer.validated_data)
        return self._accepted(accepted.body, accepted.replayed)

    @staticmethod
    def _accepted(body: dict, replayed: bool) -> Response:
        response = Response(body, status=status.HTTP_202_ACCEPTED)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    def retrieve(self, request, *args, **kwargs):
        """A notification with its messages; an HNG id (`notif_...`) gets HNG's status answer."""
        if hng.is_hng_id(kwargs["pk"]):
            return Response(hng.status(self.tenant, kwargs["pk"]))
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request=RescheduleSerializer, responses={200: dict})
    def partial_update(self, request, pk=None):
        """Reschedule: `{"send_at": "..."}` moves the unsent scheduled messages."""
        serializer = RescheduleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(lifecycle.reschedule(self.get_object(), serializer.validated_data["send_at"]))

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel every message not yet sent, and the rest of a bulk send's fan-out. 409
        `nothing_to_cancel` when nothing is left to stop (every message sent or settled), and
        `already_cancelled` for a second cancel."""
        return Response(lifecycle.cancel(self.get_object()))


class MessageViewSet(TenantViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Messages across notifications: `?status=failed` lists the dead letters, and `retry`
    puts them back in the queue."""

    queryset = Message.objects.select_related("recipient").prefetch_related("delivery_attempts")
    serializer_class = MessageSerializer
    pagination_class = HistoryPagination
    extra_error_statuses = {"retry": {409}}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        params = self.request.query_params
        queryset = filter_messages(queryset, params)
        if params.get("notification"):
            try:
                queryset = queryset.filter(
                    notification_id=serializers.UUIDField().to_internal_value(params["notification"])
                )
            except serializers.ValidationError:
                raise ApiError(400, "validation_error", "notification: not a valid id.") from None
        return queryset

    @extend_schema(
        parameters=[
            *HISTORY_PARAMETERS,
            OpenApiParameter("notification", str, description="A notification id."),
            OpenApiParameter("error", str, description="Text in the last error."),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses={202: dict})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Replay one dead letter (failed or expired) with a fresh attempt budget and expiry."""
        message = self.get_object()
        if message.status not in lifecycle.DEAD_LETTERS:
            raise ApiError(
                409, "not_failed", f"Only failed or expired messages are retried; this one is {message.status}."
            )
        if message.notification.status == Notification.Status.PAUSED:
            raise ApiError(409, "run_paused", lifecycle.PAUSED_RUN)
        lifecycle.replay(Message.objects.filter(pk=message.pk))
        return Response({"id": str(message.id), "status": Message.Status.QUEUED}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=ReplaySerializer, responses={202: dict}, operation_id="messages_retry_matching")
    @action(detail=False, methods=["post"], url_path="retry")
    def replay(self, request):
        """Replay the dead letters matching the filters (`status`: failed, the default, or
        expired; `channel`, `category`, `error`, dates)."""
        serializer = ReplaySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        filters = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in serializer.validated_data.items()}
        messages = filter_messages(super().get_queryset(), filters)
        return Response({"replayed": lifecycle.replay(messages)}, status=status.HTTP_202_ACCEPTED)


class AlertoraNotifyView(TenantScopedMixin, APIView):
    """`POST /notify`, as the original Alertora API documented it, on top of `accept`."""

    write_role = Role.ADMIN
    extra_error_statuses = {"post": {422}}

    @extend_schema(request=AlertoraNotifySerializer, responses={202: dict})
    def post(self, request):
        serializer = AlertoraNotifySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        body = serializer.validated_data
        recipient = alertora.recipient_for_send(self.tenant, body["recipient_id"])
        send = SendSerializer(
            data={
                "recipient": recipient.external_id,
                "category": body["notification_type"],
                "channels": [body["channel"]],
                "content": {body["channel"]: ALERTORA_CONTENT[body["channel"]]},
                "data": alertora_data(body["content"], self.tenant.name),
            },
            context={"tenant": self.tenant},
        )
        send.is_valid(raise_exception=True)
        accepted = services.accept(self.tenant, send.validated_data)
        return Response(
            {"message": "Notification accepted", "notification_id": str(accepted.notification.id)},
            status=status.HTTP_202_ACCEPTED,
        )


# Alertora sent one literal string. It travels as data, never as template source, so braces
# in it are printed as written instead of being run as template code.
ALERTORA_CONTENT = {
    "email": {"subject": "{{ subject }}", "text": "{{ content }}"},
    "sms": {"text": "{{ content }}"},
    "push": {"title": "{{ sender }}", "body": "{{ content }}"},
    "inapp": {"title": "{{ sender }}", "body": "{{ content }}"},
}


def alertora_data(text: str, sender: str) -> dict:
    subject = text.strip().splitlines()[0][:120] if text.strip() else sender
    return {"content": text, "subject": subject, "sender": sender}


RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A run of the campaign.")


@extend_schema_view(
    destroy=extend_schema(
        description="Delete the campaign and its schedule. Its runs with anything left to send (running, "
        "paused, or completed with messages still waiting) are cancelled first, as by their cancel."
    )
)
class CampaignViewSet(
    TenantViewSet,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """Scheduled campaigns (`notifications.campaigns`); their schedule rows follow every write."""

    queryset = Campaign.objects.select_related("category", "periodic_task")
    serializer_class = CampaignSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    extra_error_statuses = {"run": {409}, "pause_run": {409}, "resume_run": {409}, "cancel_run": {409}}

    @transaction.atomic
    def perform_create(self, serializer):
        campaigns.sync_schedule(serializer.save(tenant=self.tenant))

    @transaction.atomic
    def perform_update(self, serializer):
        campaigns.sync_schedule(serializer.save(updated=timezone.now()))

    def perform_destroy(self, campaign):
        campaigns.delete_campaign(campaign)

    @extend_schema(request=None, responses={202: CampaignRunSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        """Start a run now, whatever the schedule (a paused campaign too: an operator asked)."""
        run = campaigns.run_now(self.get_object())
        return Response(CampaignRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: CampaignRunSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def runs(self, request, pk=None):
        """The campaign's runs, newest first, with live progress."""
        runs = self.get_object().runs.select_related("notification")
        page = self.paginate_queryset(runs)
        counts = message_counts(run.notification_id for run in page)
        return self.get_paginated_response(CampaignRunSerializer(page, many=True, context={"counts": counts}).data)

    def _run(self, run_id) -> CampaignRun:
        campaign = self.get_object()
        try:
            run_id = uuid.UUID(str(run_id))
        except ValueError:
            raise ApiError(404, "not_found", "Not found.") from None
        run = CampaignRun.objects.select_related("notification").filter(campaign=campaign, pk=run_id).first()
        if run is None:
            raise ApiError(404, "not_found", "Not found.")
        return run

    @extend_schema(request=None, responses={200: CampaignRunSerializer}, parameters=[RUN_ID])
    @action(detail=True, methods=["post"], url_path=r"runs/(?P<run_id>[^/.]+)/pause")
    def pause_run(self, request, pk=None, run_id=None):
        """Stop whatever of the run is not sent yet: its fan-out after the page in progress, and its
        messages waiting to be sent (scheduled, queued, retrying), which become `paused`. A
        completed run (its fan-out done) is paused too while messages still wait or are in a
        worker's hands, as a rate-paced run's do; 409 `not_running` when none is left, or the run is paused or cancelled."""
        return Response(CampaignRunSerializer(campaigns.pause(self._run(run_id))).data)

    @extend_schema(request=None, responses={200: CampaignRunSerializer}, parameters=[RUN_ID])
    @action(detail=True, methods=["post"], url_path=r"runs/(?P<run_id>[^/.]+)/resume")
    def resume_run(self, request, pk=None, run_id=None):
        """Continue where the pause stopped: the paused messages wait again, later by the pause's
        length, and the fan-out continues from its checkpoint (a run paused after it is `completed`
        again). 409 `not_paused` for a run that is not paused."""
        return Response(CampaignRunSerializer(campaigns.resume(self._run(run_id))).data)

    @extend_schema(request=None, responses={200: CampaignRunSerializer}, parameters=[RUN_ID])
    @action(detail=True, methods=["post"], url_path=r"runs/(?P<run_id>[^/.]+)/cancel")
    def cancel_run(self, request, pk=None, run_id=None):
        """Stop whatever of the run is not sent yet: its fan-out, and every message not sent yet
        (scheduled, queued, retrying, paused), which becomes `cancelled`; the run is `cancelled`.
        A completed run (its fan-out done) is cancelled too while messages still wait or are in
        a worker's hands, as a rate-paced run's do; 409 `not_running` when none is left, or the run is cancelled."""
        return Response(CampaignRunSerializer(campaigns.cancel(self._run(run_id))).data)


RANGE_HELP = (
    "An ISO 8601 date (a whole day, UTC) or date-time. Hours are the unit: a range counts the hours starting in it."
)


class DeliveryAnalyticsView(TenantScopedMixin, APIView):
    """Counts per status, success and delivery rates, and accept-to-sent / accept-to-delivered
    latency percentiles of the tenant's messages, per group, read from hourly aggregates
    (notifications/analytics.py). Any role may read it."""

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.STR, description=f"Start (default: `to` - 7 days). {RANGE_HELP}"),
            OpenApiParameter("to", OpenApiTypes.STR, description=f"End (default: now). {RANGE_HELP}"),
            OpenApiParameter("group_by", OpenApiTypes.STR, enum=list(analytics.GROUPS), description="Default channel."),
        ],
        responses={200: dict},
    )
    def get(self, request):
        return Response(analytics.report(self.tenant, request.query_params))
