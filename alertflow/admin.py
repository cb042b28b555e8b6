"""What every operator-console page shares: changelists that stay fast on tables of millions.

Django's changelist counts the whole table twice per page (the filtered count for the paginator
and the unfiltered one for "N total"). On PostgreSQL an unfiltered count of the message table is
a sequential scan; the planner's row estimate (`pg_class.reltuples`, kept by autovacuum) is
free and close enough to page through.
"""

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections
from django.http import HttpResponseRedirect
from django.utils.functional import cached_property

from .errors import ApiError
from .redis import WriteRefused

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
    """The base of every model admin: no full-table count on any changelist, and a write Redis
    cannot hear of (alertflow.redis.WriteRefused, raised before anything is written) shown as an
    error on the same page instead of a 500."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50

    def changeform_view(self, request, *args, **kwargs):
        try:
            return super().changeform_view(request, *args, **kwargs)
        except WriteRefused as exc:
            return self._refused(request, exc)

    def delete_view(self, request, *args, **kwargs):
        try:
            return super().delete_view(request, *args, **kwargs)
        except WriteRefused as exc:
            return self._refused(request, exc)

    def changelist_view(self, request, *args, **kwargs):  # where actions run
        try:
            return super().changelist_view(request, *args, **kwargs)
        except WriteRefused as exc:
            return self._refused(request, exc)

    def _refused(self, request, exc: WriteRefused):
        self.message_user(request, str(exc.detail), messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())


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
