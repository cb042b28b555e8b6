from django.contrib import admin

from . import crypto
from .models import Provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    """Secrets never reach the page: only the names of those that are set.

    Providers are created and their config changed through the API, where each kind validates
    it; here staff can reorder, rename and switch them on or off.
    """

    list_display = ["name", "tenant", "channel", "kind", "enabled", "priority", "secrets_shown", "updated"]
    list_filter = ["channel", "kind", "enabled"]
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

    def has_add_permission(self, request):
        return False

    @admin.display(description="secrets set")
    def secrets_shown(self, provider: Provider) -> str:
        try:
            return ", ".join(provider.secrets_set()) or "-"
        except crypto.SecretsUnreadable:
            return "unreadable (keys changed)"
