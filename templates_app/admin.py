from django.contrib import admin

from alertflow.admin import OperatorAdmin

from .models import Template, TemplateVersion


class TemplateVersionInline(admin.TabularInline):
    """History is immutable: versions are shown, never added, changed or removed here."""

    model = TemplateVersion
    extra = 0
    can_delete = False
    fields = ["number", "channels", "created", "created_by"]
    readonly_fields = fields
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Template)
class TemplateAdmin(OperatorAdmin):
    list_display = ["code", "locale", "tenant", "name", "version", "updated", "deleted"]
    list_filter = [("deleted", admin.EmptyFieldListFilter), "locale"]
    search_fields = ["code", "name", "tenant__name"]
    list_select_related = ["tenant"]
    fields = ["tenant", "code", "locale", "name", "description", "version", "created", "updated", "deleted"]
    readonly_fields = ["tenant", "code", "locale", "version", "created", "updated"]
    inlines = [TemplateVersionInline]

    def has_add_permission(self, request):
        return False  # content is created through the API, where it is validated and compiled


@admin.register(TemplateVersion)
class TemplateVersionAdmin(OperatorAdmin):
    list_display = ["template", "number", "created", "created_by"]
    list_select_related = ["template__tenant"]
    search_fields = ["template__code", "template__tenant__name"]
    fields = ["template", "number", "channels", "created", "created_by"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
