"""DRF's content negotiation, with what nearly every client sends answered without parsing.

DRF parses the Accept header and orders its media types by precedence on every request, to pick
a renderer; for `*/*` (curl, httpx, most SDKs; and no header at all) and `application/json` the
answer is always the first renderer when that is JSON, as it is here. Those skip the parsing;
any other header, or a `?format=`, goes through DRF's negotiation as before (a 406 included).
"""

from rest_framework.negotiation import DefaultContentNegotiation

JSON = "application/json"
PLAIN_ACCEPTS = frozenset({"*/*", JSON})


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        if (
            renderers
            and renderers[0].media_type == JSON
            and request.META.get("HTTP_ACCEPT", "*/*") in PLAIN_ACCEPTS
            and not format_suffix
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderers[0], JSON
        return super().select_renderer(request, renderers, format_suffix)
