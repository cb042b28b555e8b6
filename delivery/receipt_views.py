"""The receipt URL of a tenant's provider: `POST /webhooks/providers/<id>/receipts`.

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

from . import crypto, receipts
from .models import Provider

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def provider_receipts(request: HttpRequest, provider_id) -> HttpResponse:
    from .channels import ReceiptRefused, provider_class  # the registry imports every provider SDK

    row = Provider.objects.filter(pk=provider_id).first()
    if row is None:
        return error_response(404, "not_found", "No provider has this receipt URL.")
    try:
        config = row.full_config()
    except crypto.SecretsUnreadable:
        logger.error("Receipts for provider %s refused: its secrets cannot be decrypted", row.pk)
        return error_response(503, "secrets_unreadable", "This provider's secrets cannot be read; try later.")
    # The URL the provider posted to, as it saw it (Twilio signs it): behind a proxy the request's
    # own host may differ, so the configured public URL wins.
    base = settings.ALERTFLOW_PUBLIC_URL.rstrip("/")
    url = base + request.get_full_path() if base else request.build_absolute_uri()
    try:
        read = provider_class(row.channel, row.kind).read_receipts(request, config, url)
    except ReceiptRefused as exc:
        logger.warning("Receipt refused for provider %s: %s", row.pk, exc)
        return error_response(exc.status, "receipt_refused", str(exc))
    with transaction.atomic():
        receipts.apply(row.tenant_id, row.channel, read)
    # 200 even when no message matched: the provider stops resending what we cannot use.
    return HttpResponse(status=200)
