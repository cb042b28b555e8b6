from django.contrib import admin
from django.utils import timezone

from .models import ApiKey, Category, Membership, Tenant


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["email", "name", "role", "created"]
    readonly_fields = ["created"]


class CategoryInline(admin.TabularInline):
    model = Category
    extra = 0


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "default_locale", "active", "created"]
    list_filter = ["active"]
    search_fields = ["name", "id"]
    inlines = [MembershipInline, CategoryInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Only the visible prefix is ever shown; the hash stays out of the page too."""

    list_display = ["name", "prefix", "tenant", "kind", "role", "created", "last_used", "expires", "revoked"]
    list_filter = ["kind", "role", ("revoked", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "tenant__name"]
    fields = ["tenant", "name", "kind", "role", "membership", "prefix", "created", "last_used", "expires", "revoked"]
    readonly_fields = ["tenant", "kind", "membership", "prefix", "created", "last_used"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are issued through the API, where the secret can be shown once

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked__isnull=True).update(revoked=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """A member's password hash is never shown; people set it by accepting their invitation."""

    list_display = ["email", "name", "tenant", "role", "created"]
    list_filter = ["role"]
    search_fields = ["email", "name", "tenant__name"]
    autocomplete_fields = ["tenant"]
    fields = ["tenant", "email", "name", "role", "created"]
    readonly_fields = ["created"]


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "tenant", "priority", "critical"]
    list_filter = ["priority", "critical"]
    search_fields = ["key", "name", "tenant__name"]
