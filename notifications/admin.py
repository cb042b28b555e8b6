from django.contrib import admin
from django.utils import timezone

from alertflow.admin import OperatorAdmin

from . import lifecycle
from .models import DeliveryAttempt, Message, Notification

ATTEMPT_FIELDS = ["started", "provider", "outcome", "duration_ms", "provider_message_id", "error"]


class AttemptInline(admin.TabularInline):
    """The delivery log of one message, as it happened: read-only."""

    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ATTEMPT_FIELDS
    readonly_fields = ATTEMPT_FIELDS

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(OperatorAdmin):
    list_display = ["id", "tenant", "audience", "status", "category", "priority", "created"]
    list_filter = ["audience", "status", "priority", "tenant"]
    list_select_related = ["tenant", "category"]
    search_fields = ["=id", "idempotency_key", "tenant__name", "category__key"]
    date_hierarchy = "created"
    readonly_fields = [f.name for f in Notification._meta.fields]
    actions = ["cancel"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel what is not sent yet")
    def cancel(self, request, queryset):
        cancelled = 0
        for notification in queryset.exclude(status=Notification.Status.CANCELLED):
            cancelled += lifecycle.cancel(notification)["cancelled_messages"]
        self.message_user(request, f"Cancelled {cancelled} message(s).")


@admin.register(Message)
class MessageAdmin(OperatorAdmin):
    list_display = ["id", "tenant", "channel", "status", "priority", "attempts", "to", "provider", "created"]
    list_filter = ["status", "channel", "priority", "notification__category__key", "tenant", "created", "sent"]
    list_select_related = ["tenant"]
    search_fields = [
        "=id",
        "=notification__id",
        "recipient__external_id",
        "recipient__email",
        "recipient__phone",
        "=provider_message_id",
    ]
    date_hierarchy = "created"
    raw_id_fields = ["notification", "recipient", "template_version"]
    readonly_fields = [f.name for f in Message._meta.fields]
    inlines = [AttemptInline]
    actions = ["retry", "cancel_waiting"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry the selected failed or expired messages (fresh attempt budget)")
    def retry(self, request, queryset):
        self.message_user(request, f"Queued {lifecycle.replay(queryset)} failed or expired message(s) again.")

    @admin.action(description="Cancel the selected scheduled, queued or retrying messages")
    def cancel_waiting(self, request, queryset):
        # The forward-only move leaves alone what a worker has claimed meanwhile.
        cancelled = queryset.move(
            Message.Status.CANCELLED, reason="cancelled", next_attempt=None, updated=timezone.now()
        )
        self.message_user(request, f"Cancelled {cancelled} message(s).")


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(OperatorAdmin):
    """The delivery log across messages: which provider fails, and how."""

    list_display = ["id", "message", "provider", "outcome", "duration_ms", "started"]
    list_filter = ["outcome", "provider", "started"]
    list_select_related = ["message"]
    search_fields = ["=message__id", "=provider_message_id"]
    date_hierarchy = "started"
    fields = ["message", *ATTEMPT_FIELDS]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
