"""Provider receipts: what a provider says happened to a message after it took it.

A provider kind that posts receipts (Twilio status callbacks, the ESPs' tracking webhooks through
django-anymail) implements `Provider.read_receipts(request, config)`: it verifies the request
against the provider account's own secret and returns `Receipt`s, or raises `ReceiptRefused` (both in channels/base.py).
`apply` then moves the messages they name, each through `Message.objects.move`, the one
forward-only transition table: a duplicate or a late receipt (`sent` after `delivered`) matches
nothing and changes nothing.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from alertflow.input_limits import UNSTORABLE
from notifications.models import Message
from preferences import suppressions
from preferences.models import Suppression

from .channels.base import Inbound, Receipt

logger = logging.getLogger(__name__)


# The statuses a receipt may move a message to, and the timestamp field each one stamps.
RECEIPT_STATUSES = {
    Message.Status.DELIVERED: "delivered",
    Message.Status.READ: "read",
    Message.Status.FAILED: "failed",
    Message.Status.BOUNCED: "failed",
    Message.Status.COMPLAINED: None,
}


def receipt_url(provider_id: str, request=None, name: str = "provider-receipts") -> str:
    """The public URL a provider posts its receipts for the tenant's provider row `provider_id`
    to (or, with `name="provider-inbound"`, people's replies): on `ALERTFLOW_PUBLIC_URL`, else on
    the host `request` came to; "" when neither is known (a worker without the setting) or for a
    deployment default, which has no row to verify against."""
    if provider_id.startswith("default:"):
        return ""
    path = reverse(name, kwargs={"provider_id": provider_id})
    if settings.ALERTFLOW_PUBLIC_URL:
        return settings.ALERTFLOW_PUBLIC_URL.rstrip("/") + path
    return request.build_absolute_uri(path) if request is not None else ""


def apply(tenant_id, channel: str, receipts: list[Receipt]) -> int:
    """Move the tenant's messages on `channel` that the receipts name; return how many moved.
    A receipt that says the address must not be contacted again (a hard bounce, a complaint)
    also suppresses it, for every category (preferences/suppressions.py); run it in a
    transaction, which `suppression_created` receivers write in.

    Unknown provider message ids and receipts the message's status no longer allows are
    skipped: providers resend what they do not see acknowledged, so the caller answers 200.

    A receipt may arrive before the worker has recorded the message's `provider_message_id` (a
    batch writes every `FLUSH_EVERY` sends). It still finds the message by our message id, which
    the send gave the provider (anymail's metadata, which the ESP echoes; the query of Twilio's
    signed StatusCallback URL); the batch's later record then matches nothing (the message is
    no longer `sending`) and keeps the receipt's word. A receipt with neither id matching is
    answered 200 and dropped. Its suppression is not: the receipt names its recipient.
    """
    moved = 0
    for receipt in receipts:
        if UNSTORABLE.search(receipt.provider_message_id):
            # No id we stored holds a NUL, and PostgreSQL cannot even compare one: an unknown id.
            logger.info("receipt_unmatched: %s %s (unstorable provider id)", channel, receipt.status)
            continue
        if receipt.suppress:
            suppress(tenant_id, channel, receipt)
        if receipt.status not in RECEIPT_STATUSES or not receipt.provider_message_id:
            continue
        now = timezone.now()
        fields = {"updated": now}
        stamp = RECEIPT_STATUSES[receipt.status]
        if stamp:
            fields[stamp] = now
        if receipt.status != Message.Status.DELIVERED and receipt.status != Message.Status.READ:
            fields["reason"] = receipt.reason[:64]
            if receipt.error:
                fields["error"] = receipt.error
        count = Message.objects.filter(
            tenant_id=tenant_id, channel=channel, provider_message_id=receipt.provider_message_id
        ).move(receipt.status, **fields)
        if not count and (ours := message_pk(receipt.message_id)):
            # Not recorded yet: the message is still `sending` without the provider's id.
            count = Message.objects.filter(
                tenant_id=tenant_id, channel=channel, pk=ours, status=Message.Status.SENDING, provider_message_id=""
            ).move(receipt.status, provider_message_id=receipt.provider_message_id[:255], **fields)
        if not count:
            logger.info("receipt_unmatched: %s %s (unknown id or already past it)", channel, receipt.status)
        moved += count
    return moved


def message_pk(value: str) -> uuid.UUID | None:
    """Our message id as a provider echoed it, or None when it is not one."""
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def suppress(tenant_id, channel: str, receipt: Receipt) -> None:
    """Suppress the address a receipt names, or else the address its message was sent to."""
    addresses = [receipt.address] if receipt.address else []
    if not addresses and receipt.provider_message_id:
        addresses = list(
            Message.objects.filter(
                tenant_id=tenant_id, channel=channel, provider_message_id=receipt.provider_message_id
            ).values_list("to", flat=True)
        )
    for address in addresses:
        suppressions.suppress_one(tenant_id, channel, address, receipt.suppress)


def apply_inbound(tenant_id, channel: str, messages: list[Inbound]) -> None:
    """Act on people's replies to the tenant: an opt-out suppresses the sender's address on the
    channel for every category (`sms_stop`, which carriers and the law require to block even
    critical messages), an opt-in lifts what an opt-out set (a bounce or a manual suppression
    stays). Run it in a transaction, which `suppression_created` receivers write in."""
    for message in messages:
        if message.opt == "out":
            suppressions.suppress_one(tenant_id, channel, message.address, Suppression.Reason.SMS_STOP)
        elif message.opt == "in":
            try:
                address = suppressions.normalise(channel, message.address)
            except suppressions.InvalidAddress:
                continue
            suppressions.lift(tenant_id, channel, address, [Suppression.Reason.SMS_STOP])
