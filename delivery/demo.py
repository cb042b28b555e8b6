"""`/demo/inbox/`: a page that embeds the in-app bell as a tenant would, to try it against
`make run`. Served only with DEBUG on: it is a development aid, not part of the API."""

from django.conf import settings
from django.http import Http404
from django.shortcuts import render


def inbox_demo(request):
    if not settings.DEBUG:
        raise Http404
    return render(request, "delivery/inbox_demo.html", {"ws_url": settings.ALERTFLOW_WS_URL})
