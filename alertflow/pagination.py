from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """`?page=&page_size=` -> `{"count", "next", "previous", "results"}` (DESIGN 6)."""

    page_size_query_param = "page_size"
    max_page_size = 500
