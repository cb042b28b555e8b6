"""The receipt URL of a tenant's provider, `POST /webhooks/providers/<id>/receipts`, and its
inbound URL, `POST /webhooks/providers/<id>/inbound` (people's replies: SMS STOP and START).

One URL per provider row, so the request is verified with that provider account's own secret
(Twilio's auth token, the ESP webhook's basic auth and signing key) and can only move that
tenant's messages. The provider kind reads it (`Provider.read_receipts`); `receipts.apply`
moves the messages.
"""

import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from alertflow.errors import error_response
from preferences.suppressions import SuppressionsUnavailable

from . import crypto, receipts
from .models import Provider

logger = logging.getLogger(__name__)


def _read(request: HttpRequest, provider_id, what: str):
    """Find the provider row of the URL, and have its kind verify and read the request with
    `what` (`read_receipts`, `read_inbound`): the row and what it read, or an error response."""
    from .channels import ReceiptRefused, provider_class  # the registry imports every provider SDK

    row = Provider.objects.filter(pk=provider_id).first()
    if row is None:
        return None, error_response(404, "not_found", "No provider has this URL.")
    try:
        config = row.full_config()
    except crypto.SecretsUnreadable:
        logger.error("Provider %s webhook refused: its secrets cannot be decrypted", row.pk)
        return None, error_response(503, "secrets_unreadable", "This provider's secrets cannot be read; try later.")
    # The URL the provider posted to, as it saw it (Twilio signs it): behind a proxy the request's
    # own host may differ, so the configured public URL wins.
    base = settings.ALERTFLOW_PUBLIC_URL.rstrip("/")
    url = base + request.get_full_path() if base else request.build_absolute_uri()
    try:
        return row, getattr(provider_class(row.channel, row.kind), what)(request, config, url)
    except ReceiptRefused as exc:
        logger.warning("Webhook refused for provider %s: %s", row.pk, exc)
        return None, error_response(exc.status, "receipt_refused", str(exc))


@csrf_exempt
@require_POST
def provider_receipts(request: HttpRequest, provider_id) -> HttpResponse:
    row, read = _read(request, provider_id, "read_receipts")
    if row is None:
        return read
    try:
        with transaction.atomic():
            receipts.apply(row.tenant_id, row.channel, read)
    except SuppressionsUnavailable as exc:  # nothing kept: the provider resends what it did not see taken
        return error_response(exc.status_code, exc.error_code, str(exc.detail))
    # 200 even when no message matched: the provider stops resending what we cannot use.
    return HttpResponse(status=200)


# An empty TwiML answer: we take the message and reply nothing (with Advanced Opt-Out on, Twilio
# sends its own confirmation of a STOP or START).
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@csrf_exempt
@require_POST
def provider_inbound(request: HttpRequest, provider_id) -> HttpResponse:
    """Messages people send to a tenant's number: `POST /webhooks/providers/<id>/inbound`.
    Opt-out keywords (STOP) suppress the sender's number on the channel, opt-in keywords (START)
    lift that suppression; anything else is taken and ignored."""
    row, read = _read(request, provider_id, "read_inbound")
    if row is None:
        return read
    try:
        with transaction.atomic():
            receipts.apply_inbound(row.tenant_id, row.channel, read)
    except SuppressionsUnavailable as exc:
        return error_response(exc.status_code, exc.error_code, str(exc.detail))
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
