from django.contrib import admin

from alertflow.admin import ApiCheckedForm, OperatorAdmin, api_checked

from .models import Device, Preference, Recipient, Subscription, Suppression, Topic
from .serializers import RecipientSerializer, TopicSerializer, validate_external_id


class RecipientForm(ApiCheckedForm):
    api_serializer = RecipientSerializer

    def clean_external_id(self):
        # The API's rule for an id (the URL's, not the body's: its serializer has it read-only).
        return api_checked(validate_external_id, self.cleaned_data["external_id"])


class TopicForm(ApiCheckedForm):
    api_serializer = TopicSerializer


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

    def has_add_permission(self, request, obj=None):
        return False  # see DeviceAdmin


@admin.register(Recipient)
class RecipientAdmin(OperatorAdmin):
    form = RecipientForm
    list_display = ["external_id", "tenant", "email", "phone", "locale", "timezone", "updated"]
    list_filter = ["tenant"]
    search_fields = ["external_id", "email", "phone"]
    list_select_related = ["tenant"]
    raw_id_fields = ["tenant"]
    readonly_fields = ["created", "updated"]
    inlines = [PreferenceInline, DeviceInline]


@admin.register(Device)
class DeviceAdmin(OperatorAdmin):
    list_display = ["id", "platform", "recipient", "tenant", "active", "reason", "last_seen"]
    list_filter = ["platform", "active"]
    search_fields = ["recipient__external_id", "=token"]
    list_select_related = ["recipient", "tenant"]
    raw_id_fields = ["tenant", "recipient"]
    # The push token addresses the device: searchable by exact value, never shown.
    fields = ["tenant", "recipient", "platform", "active", "reason", "last_seen", "created"]
    readonly_fields = ["created"]

    def has_add_permission(self, request):
        # Devices are registered through the API, which holds the token: one added here had an
        # empty token (and, from the recipient page's inline, no tenant: a 500).
        return False


@admin.register(Topic)
class TopicAdmin(OperatorAdmin):
    form = TopicForm
    list_display = ["key", "name", "tenant", "created"]
    list_filter = ["tenant"]
    search_fields = ["key", "name"]
    list_select_related = ["tenant"]
    raw_id_fields = ["tenant"]
    # Topics can have 100,000 subscribers: no inline list of them; use the API or the shell.


@admin.register(Preference)
class PreferenceAdmin(OperatorAdmin):
    list_display = ["recipient", "quiet_start", "quiet_end", "updated"]
    list_select_related = ["recipient"]
    search_fields = ["recipient__external_id", "recipient__email"]
    fields = ["recipient", "channels", "categories", "quiet_start", "quiet_end", "updated"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # documents are validated by the API


@admin.register(Subscription)
class SubscriptionAdmin(OperatorAdmin):
    list_display = ["topic", "recipient", "created"]
    list_select_related = ["topic", "recipient"]
    search_fields = ["topic__key", "recipient__external_id"]
    raw_id_fields = ["topic", "recipient"]


@admin.register(Suppression)
class SuppressionAdmin(OperatorAdmin):
    list_display = ["channel", "address", "category", "reason", "tenant", "created"]
    list_filter = ["channel", "reason"]
    search_fields = ["=address"]
    list_select_related = ["tenant", "category"]
    fields = ["tenant", "channel", "address", "category", "reason", "created"]
    readonly_fields = fields

    def has_add_permission(self, request):
        # Added through the API or by providers' answers, which normalise the address and send
        # `suppression_created`; an operator may only look, and delete one added in error.
        return False

    def has_change_permission(self, request, obj=None):
        # Every field is read-only: a "save" would only re-run the write's Redis mark, a 500 while
        # Redis is down (preferences.suppressions.SuppressionsUnavailable).
        return False
