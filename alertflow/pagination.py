from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination
from rest_framework.exceptions import NotFound


class PageNumberPagination(pagination.PageNumberPagination):
    """`?page=&page_size=` -> `{"count", "next", "previous", "results"}` (DESIGN 6)."""

    page_size_query_param = "page_size"
    max_page_size = 500


class CursorPagination(pagination.CursorPagination):
    """DRF's cursor pagination, refusing a hand-made cursor as DRF refuses one it cannot decode
    (404, "Invalid cursor"). The cursor is base64, not signed: DRF checks its offset and
    direction but filters by its position as it is, and a position the ordering field cannot read
    (`p=garbage` for a date) raised Django's ValidationError from the filter, a 500."""

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except DjangoValidationError:
            raise NotFound(self.invalid_cursor_message) from None
