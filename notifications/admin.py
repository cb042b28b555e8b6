from django.contrib import admin

from . import lifecycle
from .models import DeliveryAttempt, Message, Notification


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["started", "provider", "outcome", "duration_ms", "provider_message_id", "error"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "tenant", "audience", "status", "category", "priority", "created"]
    list_filter = ["audience", "status", "priority"]
    search_fields = ["id", "idempotency_key", "tenant__name"]
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
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "tenant", "channel", "status", "priority", "attempts", "provider", "created"]
    list_filter = ["status", "channel", "priority"]
    search_fields = ["id", "recipient__external_id", "provider_message_id", "notification__id"]
    date_hierarchy = "created"
    raw_id_fields = ["notification", "recipient", "template_version"]
    readonly_fields = [f.name for f in Message._meta.fields]
    inlines = [AttemptInline]
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry the selected failed or expired messages (fresh attempt budget)")
    def retry(self, request, queryset):
        self.message_user(request, f"Queued {lifecycle.replay(queryset)} failed or expired message(s) again.")
