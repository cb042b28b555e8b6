from django import forms
from django.contrib import admin
from django.db import transaction
from django.utils import timezone

from alertflow.admin import ApiCheckedForm, OperatorAdmin, api_checked

from . import keys, services
from .models import ApiKey, Category, Membership, Quota, Tenant, Usage
from .serializers import CategorySerializer, InviteSerializer, normalize_locale


class TenantForm(forms.ModelForm):
    def clean_default_locale(self):
        # The recipients API's rule for a locale: templates are looked up by the canonical spelling.
        return api_checked(normalize_locale, self.cleaned_data["default_locale"])


class MembershipForm(forms.ModelForm):
    def clean_email(self):
        # As an invitation checks and stores it: the invite API's field, then the one stored
        # spelling, so the form's per-tenant unique check sees the email the row will hold
        # (checked as typed, `Ada@` passed it beside `ada@` and the save answered 500).
        email = api_checked(InviteSerializer().fields["email"].run_validation, self.cleaned_data["email"])
        return Membership.normalize_email(email)


class CategoryForm(ApiCheckedForm):
    api_serializer = CategorySerializer


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipForm
    extra = 0
    fields = ["email", "name", "role", "created"]
    readonly_fields = ["created"]


class CategoryInline(admin.TabularInline):
    model = Category
    form = CategoryForm
    extra = 0


@admin.register(Tenant)
class TenantAdmin(OperatorAdmin):
    form = TenantForm
    list_display = ["name", "id", "default_locale", "active", "created"]
    list_filter = ["active"]
    search_fields = ["name", "id"]
    inlines = [MembershipInline, CategoryInline]

    def delete_model(self, request, obj):
        services.delete_tenants(Tenant.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        services.delete_tenants(queryset)


@admin.register(ApiKey)
class ApiKeyAdmin(OperatorAdmin):
    """Only the visible prefix is ever shown; the hash stays out of the page too."""

    list_display = ["name", "prefix", "tenant", "kind", "role", "created", "last_used", "expires", "revoked"]
    list_filter = ["kind", "role", ("revoked", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "tenant__name"]
    list_select_related = ["tenant"]
    fields = ["tenant", "name", "kind", "role", "membership", "prefix", "created", "last_used", "expires", "revoked"]
    readonly_fields = ["tenant", "kind", "membership", "prefix", "created", "last_used"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are issued through the API, where the secret can be shown once

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        live = queryset.filter(revoked__isnull=True)
        with transaction.atomic():
            # A queryset update sends no signal (tenants/signals.py): without these bumps every
            # process that had cached a key kept accepting it for up to keys.CACHE_SECONDS.
            for tenant_id in set(live.values_list("tenant_id", flat=True)):
                keys.changing(tenant_id)
            count = live.update(revoked=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).")


@admin.register(Membership)
class MembershipAdmin(OperatorAdmin):
    """A member's password hash is never shown; people set it by accepting their invitation."""

    list_display = ["email", "name", "tenant", "role", "created"]
    list_filter = ["role"]
    search_fields = ["email", "name", "tenant__name"]
    list_select_related = ["tenant"]
    form = MembershipForm
    autocomplete_fields = ["tenant"]
    fields = ["tenant", "email", "name", "role", "created"]
    readonly_fields = ["created"]


@admin.register(Category)
class CategoryAdmin(OperatorAdmin):
    form = CategoryForm
    list_display = ["key", "name", "tenant", "priority", "critical"]
    list_filter = ["priority", "critical", "tenant"]
    search_fields = ["key", "name", "tenant__name"]
    list_select_related = ["tenant"]


@admin.register(Quota)
class QuotaAdmin(OperatorAdmin):
    """Operators set a tenant's monthly allowance per channel here; no row means unlimited."""

    list_display = ["tenant", "channel", "monthly_limit"]
    list_filter = ["channel", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name"]
    autocomplete_fields = ["tenant"]


@admin.register(Usage)
class UsageAdmin(OperatorAdmin):
    """Counters kept by the accept path: shown, never edited."""

    list_display = ["tenant", "period", "channel", "shard", "used"]
    list_filter = ["channel", "period"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name"]
    fields = ["tenant", "period", "channel", "shard", "used"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
