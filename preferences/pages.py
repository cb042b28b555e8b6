"""The one-click unsubscribe page: `GET|POST /u/<token>` (RFC 8058), for people, not API clients.

A mail client's one-click unsubscribe POSTs `List-Unsubscribe=One-Click` to the mail's
`List-Unsubscribe` URL with no cookies and no CSRF token (RFC 8058 section 3.1), so the POST is
CSRF-exempt: the signed token is the whole credential, and it only ever turns mail off. A GET
only shows a confirmation page whose button POSTs: link scanners and mail-security proxies
follow every link in a mail with GET, and must never unsubscribe anyone (RFC 8058 section 1).

Every answer is a small HTML page of this app's own (no external assets, nothing cached):
400 for a token this deployment did not sign, 404 when what it names is gone (the recipient was
erased, their address changed, the category was deleted), 403 for a POST on a critical category,
405 for any other method, 503 (with Retry-After) when the opt-out cannot be written because
Redis is unreachable (services.PreferencesUnavailable: nothing written).
"""

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from alertflow.choices import Channel
from tenants.models import Category

from . import services
from .models import Recipient
from .unsubscribe import BadLink, read_token

logger = logging.getLogger(__name__)

SOURCE = "unsubscribe_link"


def page(request: HttpRequest, state: str, status: int = 200, **context) -> HttpResponse:
    response = render(request, "preferences/unsubscribe.html", {"state": state, **context}, status=status)
    # An HTML page for a person even when it says no: the JSON error middleware keeps it.
    response.is_page = True
    # The URL is a credential: no Referer to anywhere, and no search engine keeps the page.
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        link = read_token(token)
    except BadLink:
        return page(request, "invalid", status=400)
    # The tenant comes from the signed token with the recipient: a link names one tenant's
    # recipient and can reach no other tenant's rows.
    recipient = (
        Recipient.objects.select_related("tenant").filter(tenant_id=link.tenant_id, pk=link.recipient_id).first()
    )
    if recipient is None or not link.matches(recipient.email):
        return page(request, "gone", status=404)
    category = None
    if link.category:
        category = Category.objects.filter(tenant_id=recipient.tenant_id, key=link.category).first()
        if category is None:
            return page(request, "gone", status=404)
    context = {"tenant": recipient.tenant.name, "category": category}
    if category is not None and category.critical:
        # Critical mail (security alerts, one-time codes) ignores opt-outs; no mail of it carries
        # this link, but a hand-made POST must not look as if it had worked.
        return page(request, "critical", status=403 if request.method == "POST" else 200, **context)
    if request.method != "POST":
        return page(request, "confirm", **context)
    try:
        changed = services.opt_out(recipient, category, Channel.EMAIL.value, source=SOURCE)
    except services.PreferencesUnavailable as exc:
        # Nothing written: a 503 makes the mail provider's one-click POST come again, and the
        # page asks a person to.
        response = page(request, "unavailable", status=503, **context)
        response["Retry-After"] = str(exc.wait)  # the API's Retry-After for the same refusal
        return response
    if changed:
        logger.info(
            "unsubscribed: recipient %s of tenant %s from %s email",
            recipient.pk,
            recipient.tenant_id,
            category.key if category else "all",
        )
    return page(request, "done", **context)
