"""The content negotiation's short cut answers as DRF's own does (alertflow/negotiation.py)."""

import pytest
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from alertflow.negotiation import ContentNegotiation

ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "application/json; indent=4",
    "application/*",
    "text/html",
    "text/html, */*;q=0.8",
    "application/xml",
    "",
]
RENDERER_SETS = {"production": [JSONRenderer()], "debug": [JSONRenderer(), BrowsableAPIRenderer()]}


def choice(negotiation, accept, query, renderers):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/v1/categories" + query, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers)
    except NotAcceptable:
        return "406"
    except Http404:  # a ?format= no renderer has
        return "404"
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", RENDERER_SETS.values(), ids=RENDERER_SETS)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api"])
@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_same_renderer_and_media_type_as_drf(accept, query, renderers):
    assert choice(ContentNegotiation(), accept, query, renderers) == choice(
        DefaultContentNegotiation(), accept, query, renderers
    )


@pytest.mark.django_db
def test_the_api_answers_json_and_refuses_what_it_cannot_render(owner):
    assert owner.get("/api/v1/categories", HTTP_ACCEPT="*/*")["Content-Type"] == "application/json"
    refused = owner.get("/api/v1/categories", HTTP_ACCEPT="text/html")

    assert refused.status_code == 406
    assert refused.json()["error"]["code"] == "not_acceptable"
