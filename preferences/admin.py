from django.contrib import admin

from .models import Device, Preference, Recipient, Topic


class PreferenceInline(admin.StackedInline):
    """Shown, not edited here: the API validates the document (channels, category keys)."""

    model = Preference
    extra = 0
    can_delete = False
    readonly_fields = ["channels", "categories", "quiet_start", "quiet_end", "updated"]

    def has_add_permission(self, request, obj=None):
        return False


class DeviceInline(admin.TabularInline):
    model = Device
    extra = 0
    fields = ["platform", "active", "reason", "last_seen", "created"]
    readonly_fields = ["platform", "last_seen", "created"]
    show_change_link = True


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = ["external_id", "tenant", "email", "phone", "locale", "timezone", "updated"]
    list_filter = ["tenant"]
    search_fields = ["external_id", "email", "phone"]
    list_select_related = ["tenant"]
    raw_id_fields = ["tenant"]
    readonly_fields = ["created", "updated"]
    inlines = [PreferenceInline, DeviceInline]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["id", "platform", "recipient", "tenant", "active", "reason", "last_seen"]
    list_filter = ["platform", "active"]
    search_fields = ["recipient__external_id", "token"]
    list_select_related = ["recipient", "tenant"]
    raw_id_fields = ["tenant", "recipient"]
    readonly_fields = ["created"]


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "tenant", "created"]
    list_filter = ["tenant"]
    search_fields = ["key", "name"]
    list_select_related = ["tenant"]
    raw_id_fields = ["tenant"]
    # Topics can have 100,000 subscribers: no inline list of them; use the API or the shell.
