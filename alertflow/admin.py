"""What every operator-console page shares: changelists that stay fast on tables of millions.

Django's changelist counts the whole table twice per page (the filtered count for the paginator
and the unfiltered one for "N total"). On PostgreSQL an unfiltered count of the message table is
a sequential scan; the planner's row estimate (`pg_class.reltuples`, kept by autovacuum) is
free and close enough to page through.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.core.paginator import Paginator
from django.db import connections, router, transaction
from django.http import HttpResponseRedirect
from django.utils.functional import cached_property
from rest_framework import serializers

from . import input_limits
from .errors import ApiError, TryAgain

# Below this estimate an exact count is cheap and the estimate may be stale (a fresh table).
EXACT_COUNT_BELOW = 100_000


class EstimatedCountPaginator(Paginator):
    """Counts exactly when a filter is applied or the table is small; otherwise uses the
    planner's estimate of the table's rows (PostgreSQL only)."""

    @cached_property
    def count(self) -> int:
        estimate = table_row_estimate(self.object_list)
        if estimate is not None and estimate >= EXACT_COUNT_BELOW:
            return estimate
        return super().count


def table_row_estimate(queryset) -> int | None:
    """The planner's row count of an unfiltered queryset's table; None when it cannot say."""
    query = getattr(queryset, "query", None)
    if query is None or query.where or query.is_sliced or query.distinct:
        return None
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
        )
        row = cursor.fetchone()
    # -1: never analysed.
    return row[0] if row and row[0] >= 0 else None


class OperatorAdmin(admin.ModelAdmin):
    """The base of every model admin: no full-table count on any changelist, and a write refused
    before anything of it was kept (alertflow.errors.TryAgain: one Redis cannot hear of, a
    tenants' deletion that kept losing to their sends) shown as an error on the same page
    instead of a 500. The changelist's "delete selected" runs in one transaction, as the delete
    page does: refused, it leaves no log entry saying the rows were deleted."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50

    def changeform_view(self, request, *args, **kwargs):
        try:
            return super().changeform_view(request, *args, **kwargs)
        except TryAgain as exc:
            return self._refused(request, exc)

    def delete_view(self, request, *args, **kwargs):
        try:
            return super().delete_view(request, *args, **kwargs)
        except TryAgain as exc:
            return self._refused(request, exc)

    def changelist_view(self, request, *args, **kwargs):  # where actions run
        try:
            return super().changelist_view(request, *args, **kwargs)
        except TryAgain as exc:
            return self._refused(request, exc)

    def _refused(self, request, exc: TryAgain):
        self.message_user(request, str(exc.detail), messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (delete_selected_in_one_transaction, name, description)
        return actions


def delete_selected_in_one_transaction(modeladmin, request, queryset):
    """Django's "delete selected" action, whose log entries are written before the rows are
    deleted and, outside a transaction, stayed when the deletion then failed."""
    with transaction.atomic(using=router.db_for_write(modeladmin.model)):
        return delete_selected(modeladmin, request, queryset)


def api_checked(check, value):
    """`check(value)`, the API's rule for one field (which may return the value normalised), with
    its refusal as a form error: a value the API would refuse is never saved."""
    try:
        return check(value)
    except serializers.ValidationError as exc:
        raise forms.ValidationError(exc.detail) from None


class ApiCheckedForm(forms.ModelForm):
    """A model admin's form whose changed values pass the API's serializer for the model
    (`api_serializer`), as a PATCH through the API would, and the API's JSON limits: one place
    for each rule (an IANA timezone, an E.164 phone, a locale, a category's channels...), so no
    operator can store what the API refuses, and sends then trip over. The values saved are the
    ones the serializer normalised (a lower-cased email, a phone in E.164); its errors are shown
    on the fields. The serializer is given the saved object, as a PATCH is, so its checks of the
    object as a whole (a campaign's template with its channels) see the values left unchanged.
    """

    api_serializer: type  # a DRF serializer; its context has the object's `tenant`

    def clean(self):
        cleaned = super().clean()
        tenant = self._tenant(cleaned)
        if tenant is None:  # the tenant field has its error; the API's checks are per tenant
            return cleaned
        instance = None if self.instance._state.adding else self.instance
        serializer = self.api_serializer(instance, context={"tenant": tenant})
        writable = [name for name, field in serializer.fields.items() if not field.read_only]
        changed = {
            name: self.api_value(name, cleaned[name])
            for name in writable
            if name in self.changed_data and name in cleaned
        }
        for name, value in list(changed.items()):
            try:
                input_limits.check_json(value, name)
            except ApiError as exc:  # NUL, too deep, a number past a double: the API's 400s
                self.add_error(name, str(exc.detail))
                del changed[name]
        if not changed:
            return cleaned
        serializer = self.api_serializer(instance, data=changed, partial=True, context=serializer.context)
        try:
            valid = serializer.is_valid()
        except ApiError as exc:  # a check that answers with its own code (an address not allowed)
            self.add_error(None, str(exc.detail))
            return cleaned
        if not valid:
            for name, problems in serializer.errors.items():
                self.add_error(name if name in changed else None, _messages(problems))
            return cleaned
        # What the serializer normalised, and what it derived (a campaign's channels from its
        # category when none are named), as the API would store them.
        cleaned.update({name: value for name, value in serializer.validated_data.items() if name in cleaned})
        return cleaned

    def api_value(self, name: str, value):
        """A form field's cleaned value as the API's request body has it (a model instance as the
        key the API names it by, say)."""
        return value

    def _tenant(self, cleaned: dict):
        if "tenant" in cleaned:
            return cleaned["tenant"]
        return getattr(self.instance, "tenant", None) if getattr(self.instance, "tenant_id", None) else None


def _messages(problems) -> list[str]:
    """A serializer's errors for one field as flat text (nested ones name their path)."""
    if isinstance(problems, dict):
        return [f"{key}: {text}" for key, inner in problems.items() for text in _messages(inner)]
    if isinstance(problems, list):
        return [text for inner in problems for text in _messages(inner)]
    return [str(problems)]


def change_each(model_admin: admin.ModelAdmin, request, objects, change) -> list:
    """Run an action's `change(obj)` on each object on its own; return what it returned for
    those it changed.

    An object whose change raises ApiError is left as it is: a conflict with a change made
    meanwhile (a cancel through the API, a run that finished, a quota reached, a write Redis
    cannot hear of), which the API would answer with a 4xx or a 503. One warning names each
    such object and why; the others are still changed, and the page never answers 500.
    """
    changed, refused = [], []
    for obj in objects:
        try:
            changed.append(change(obj))
        except ApiError as exc:
            refused.append(f"{obj}: {exc.detail}")
    if refused:
        model_admin.message_user(request, "Left as they were: " + "; ".join(refused), messages.WARNING)
    return changed
