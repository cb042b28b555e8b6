from django import forms
from django.contrib import admin
from django.db import transaction
from django.utils import timezone

from alertflow.admin import ApiCheckedForm, OperatorAdmin, change_each
from tenants.models import Category

from . import campaigns, lifecycle
from .models import Campaign, CampaignRun, DeliveryAttempt, DeliveryCount, DeliveryLatency, Message, Notification
from .serializers import CampaignSerializer

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
        # One cancelled through the API since the page was read is left, and named (409).
        done = change_each(self, request, queryset.exclude(status=Notification.Status.CANCELLED), lifecycle.cancel)
        self.message_user(request, f"Cancelled {sum(d['cancelled_messages'] for d in done)} message(s).")


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

    @admin.action(description="Cancel the selected scheduled, queued, retrying or paused messages")
    def cancel_waiting(self, request, queryset):
        # The forward-only move leaves alone what a worker has claimed meanwhile.
        cancelled = lifecycle.cancel_waiting(queryset, timezone.now())
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


class AggregateAdmin(OperatorAdmin):
    """The analytics aggregates (notifications/analytics.py), kept by status writes: shown, never
    edited (an edit would make the reports disagree with what happened)."""

    list_filter = ["channel", "tenant", "hour"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name", "category", "provider"]
    date_hierarchy = "hour"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeliveryCount)
class DeliveryCountAdmin(AggregateAdmin):
    list_display = ["hour", "tenant", "channel", "category", "provider", "status", "shard", "n"]
    list_filter = ["status", *AggregateAdmin.list_filter]


@admin.register(DeliveryLatency)
class DeliveryLatencyAdmin(AggregateAdmin):
    list_display = ["hour", "tenant", "channel", "category", "provider", "stage", "bucket", "shard", "n"]
    list_filter = ["stage", *AggregateAdmin.list_filter]


class CampaignRunInline(admin.TabularInline):
    model = CampaignRun
    extra = 0
    can_delete = False
    fields = readonly_fields = ["slot", "state", "audience_size", "progress", "started", "finished"]
    ordering = ["-started"]

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, run):
        return ", ".join(f"{name} {count}" for name, count in campaigns.progress(run).items())


class CategoryChoice(forms.ModelChoiceField):
    def label_from_instance(self, category):
        return f"{category.key} ({category.tenant})"  # on the add page, every tenant's are offered


class CampaignForm(ApiCheckedForm):
    """The campaigns API's checks (schedule, audience, template and channels, category), and a
    category of the campaign's own tenant only: the API names it by key within the tenant."""

    api_serializer = CampaignSerializer

    class Meta:
        field_classes = {"category": CategoryChoice}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        category = self.fields.get("category")
        if category is not None:
            tenant_id = self.instance.tenant_id
            if tenant_id is None:  # the tenant is chosen on the same page: clean_category checks
                category.queryset = Category.objects.select_related("tenant")
            else:
                category.queryset = Category.objects.filter(tenant_id=tenant_id).select_related("tenant")

    def clean_category(self):
        category = self.cleaned_data["category"]
        tenant = self._tenant(self.cleaned_data)
        if category is not None and tenant is not None and category.tenant_id != tenant.pk:
            raise forms.ValidationError(f"{category.key!r} is a category of another tenant, not of {tenant}.")
        return category

    def api_value(self, name, value):
        if name == "category":
            return value.key if value is not None else None
        return value


@admin.register(Campaign)
class CampaignAdmin(OperatorAdmin):
    """Campaigns with their runs; saving here keeps the beat schedule in step, as the API does.
    A campaign stays with its tenant (its template, category and audience are the tenant's)."""

    form = CampaignForm
    list_display = ["name", "tenant", "template", "paused", "next_run_at", "created"]
    list_filter = ["paused"]
    search_fields = ["name", "tenant__name", "template"]
    readonly_fields = ["periodic_task", "next_run_at", "created", "updated"]
    inlines = [CampaignRunInline]
    actions = ["run_now", "pause", "resume", "cancel_runs"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "tenant"] if obj is not None else self.readonly_fields

    @admin.display(description="next run")
    def next_run_at(self, campaign):
        if campaign._state.adding:  # the add page: no schedule yet (next_run raised: a 500)
            return None
        return campaigns.next_run(campaign)

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            campaigns.sync_schedule(obj)

    def delete_model(self, request, obj):
        campaigns.delete_campaign(obj)

    def delete_queryset(self, request, queryset):
        for campaign in queryset:
            campaigns.delete_campaign(campaign)

    @admin.action(description="Run the selected campaigns now")
    def run_now(self, request, queryset):
        # A campaign over its tenant's monthly quota is left, and named (429).
        runs = change_each(
            self, request, queryset, lambda campaign: campaigns.start_run(campaign, *[timezone.now()] * 2)
        )
        self.message_user(request, f"Started {sum(map(bool, runs))} run(s).")

    @admin.action(description="Pause: no new runs, and stop the runs with anything left to send")
    def pause(self, request, queryset):
        self._set_paused(request, queryset, True)

    @admin.action(description="Resume: schedules and paused runs continue")
    def resume(self, request, queryset):
        self._set_paused(request, queryset, False)

    @admin.action(description="Cancel the runs with anything left to send (the campaigns and schedules stay)")
    def cancel_runs(self, request, queryset):
        cancelled = 0
        for campaign in queryset:
            runs = campaigns.cancellable(campaign.runs.select_related("notification"))
            # A run that finished or was cancelled since it was read is left, and named (409).
            cancelled += len(change_each(self, request, runs, campaigns.cancel))
        self.message_user(request, f"Cancelled {cancelled} run(s) of {queryset.count()} campaign(s).")

    def _set_paused(self, request, queryset, paused: bool):
        changed_runs = 0
        for campaign in queryset:
            with transaction.atomic():
                campaign.paused = paused
                campaign.save(update_fields=["paused"])
                campaigns.sync_schedule(campaign)
            runs = campaign.runs.select_related("notification")
            runs = campaigns.pausable(runs) if paused else runs.filter(notification__status=Notification.Status.PAUSED)
            # A run that finished or changed state since it was read is left, and named (409).
            changed_runs += len(change_each(self, request, runs, campaigns.pause if paused else campaigns.resume))
        verb = "Paused" if paused else "Resumed"
        self.message_user(request, f"{verb} {queryset.count()} campaign(s) and {changed_runs} run(s).")
