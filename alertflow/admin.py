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
