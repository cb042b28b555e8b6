from django.contrib import admin

from alertflow.admin import OperatorAdmin

from . import crypto
from .models import InboxItem, InboxSecret, Provider, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from .webhooks import relay


@admin.register(Provider)
class ProviderAdmin(OperatorAdmin):
    """Secrets never reach the page: only the names of those that are set.

    Providers are created and their config changed through the API, where each kind validates
    it; here staff can reorder, rename and switch them on or off.
    """

    list_display = ["name", "tenant", "channel", "kind", "enabled", "priority", "secrets_shown", "updated"]
    list_filter = ["channel", "kind", "enabled", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name", "kind", "tenant__name"]
    ordering = ["tenant__name", "channel", "priority", "name"]
    fields = [
        "tenant",
        "channel",
        "kind",
        "name",
        "priority",
        "enabled",
        "config",
        "secrets_shown",
        "created",
        "updated",
    ]
    readonly_fields = ["tenant", "channel", "kind", "config", "secrets_shown", "created", "updated"]

    actions = ["disable", "enable"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Disable the selected providers (failover skips them)")
    def disable(self, request, queryset):
        self.message_user(request, f"Disabled {switch(queryset, enabled=False)} provider(s).")

    @admin.action(description="Enable the selected providers")
    def enable(self, request, queryset):
        self.message_user(request, f"Enabled {switch(queryset, enabled=True)} provider(s).")

    @admin.display(description="secrets set")
    def secrets_shown(self, provider: Provider) -> str:
        try:
            return ", ".join(provider.secrets_set()) or "-"
        except crypto.SecretsUnreadable:
            return "unreadable (keys changed)"


def switch(queryset, *, enabled: bool) -> int:
    """Saved one by one, not with `update()`: each save's signal tells every worker's provider
    cache (delivery/providers.py) at once; a tenant has a handful of providers."""
    changed = 0
    for provider in queryset.filter(enabled=not enabled):
        provider.enabled = enabled
        provider.save(update_fields=["enabled", "updated"])
        changed += 1
    return changed


@admin.register(InboxSecret)
class InboxSecretAdmin(OperatorAdmin):
    """That a tenant has an inbox secret, and since when; the secret itself is never shown
    (rotate it through the API)."""

    list_display = ["tenant", "created"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name"]
    fields = ["tenant", "created"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(InboxItem)
class InboxItemAdmin(OperatorAdmin):
    list_display = ["message", "recipient", "tenant", "category", "title", "created", "read", "archived"]
    list_filter = ["category", ("read", admin.EmptyFieldListFilter), ("archived", admin.EmptyFieldListFilter)]
    list_select_related = ["recipient", "tenant"]
    search_fields = ["=message__id", "recipient__external_id"]
    date_hierarchy = "created"
    raw_id_fields = ["message", "recipient", "tenant"]
    readonly_fields = ["message", "tenant", "recipient", "created"]

    def has_add_permission(self, request):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OperatorAdmin):
    """The signing secrets never reach the page (they are encrypted, and not a field here)."""

    list_display = ["url", "tenant", "enabled", "disabled_reason", "failed_deliveries", "failing_since", "created"]
    list_filter = ["enabled", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["url", "description", "tenant__name"]
    fields = [
        "tenant", "url", "events", "description", "enabled", "disabled_reason", "previous_expires",
        "failing_since", "failed_deliveries", "created", "updated",
    ]  # fmt: skip
    readonly_fields = [
        "tenant",
        "url",
        "events",
        "previous_expires",
        "failing_since",
        "failed_deliveries",
        "created",
        "updated",
    ]

    def has_add_permission(self, request):
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(OperatorAdmin):
    list_display = ["id", "type", "tenant", "created"]
    list_filter = ["type"]
    list_select_related = ["tenant"]
    search_fields = ["=id", "key"]
    readonly_fields = ["id", "tenant", "type", "key", "payload", "created"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = readonly_fields = ["started", "duration_ms", "status_code", "response", "error"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(OperatorAdmin):
    list_display = ["id", "event_type", "endpoint", "status", "attempts", "next_attempt", "last_status_code", "created"]
    list_filter = ["status", "event_type"]
    list_select_related = ["endpoint"]
    search_fields = ["=id", "=event__id"]
    readonly_fields = [
        "id", "tenant", "event", "endpoint", "event_type", "status", "attempts", "next_attempt", "last_status_code",
        "created", "updated", "delivered",
    ]  # fmt: skip
    inlines = [WebhookAttemptInline]
    actions = ["replay"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Replay the selected deliveries (same event id, fresh tries)")
    def replay(self, request, queryset):
        self.message_user(request, f"Replayed {relay.replayable(queryset)} delivery(ies).")


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(OperatorAdmin):
    list_display = ["delivery", "started", "status_code", "duration_ms", "error"]
    list_select_related = ["delivery"]
    readonly_fields = ["delivery", "started", "duration_ms", "status_code", "response", "error"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
