"""Timers live in PostgreSQL, not in the broker (DESIGN section 3).

`enqueue_due` moves messages whose `next_attempt` has come (scheduled sends, quiet-hours
deferrals, retries) back to `queued` and publishes them; `sweep_stale` re-publishes what the
broker lost (a publish during an outage, a killed worker). Both lock rows with
`FOR UPDATE SKIP LOCKED`, so several beat or worker processes never double-enqueue a row.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from notifications import queue
from notifications.models import Message, Notification

from . import state

logger = logging.getLogger(__name__)

# Messages waiting to be sent, which expiry may end.
WAITING = [Message.Status.SCHEDULED, Message.Status.QUEUED, Message.Status.RETRYING]
# Rows one poll handles; a larger backlog is drained by the next polls a second apart.
POLL_BATCH = 2000


def enqueue_due(now=None) -> int:
    """Expire what waited past its `expires_at`, then queue what is due; return how many were queued."""
    now = now or timezone.now()
    expire_overdue(now)
    with transaction.atomic():
        due = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(status__in=[Message.Status.SCHEDULED, Message.Status.RETRYING], next_attempt__lte=now)
            .order_by("next_attempt")
            .only("id", "channel", "priority", "batched", "status")[:POLL_BATCH]
        )
        if not due:
            return 0
        Message.objects.filter(pk__in=[m.pk for m in due]).move(
            Message.Status.QUEUED, expected=len(due), queued=now, updated=now, next_attempt=None
        )
        for message in due:
            message.status = Message.Status.QUEUED
        queue.enqueue_on_commit(due)
    return len(due)


def expire_overdue(now) -> int:
    """Waiting messages (scheduled, queued, retrying) past their `expires_at` become `expired`,
    with the reason saying where they waited. Returns how many."""
    with transaction.atomic():
        overdue = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(status__in=WAITING, expires_at__lte=now)
            .values_list("pk", flat=True)[:POLL_BATCH]
        )
        if not overdue:
            return 0
        expired = Message.objects.filter(pk__in=overdue).move(
            Message.Status.EXPIRED,
            expected=len(overdue),
            reason=Case(
                When(status=Message.Status.SCHEDULED, then=Value(state.EXPIRED_WHILE_SCHEDULED)),
                When(status=Message.Status.RETRYING, then=Value(state.EXPIRED_WHILE_RETRYING)),
                default=Value(state.EXPIRED_IN_QUEUE),
            ),
            next_attempt=None,
            updated=now,
        )
    logger.info("Expired %d message(s) that waited past their expires_at", expired)
    return expired


def sweep_stale(now=None) -> dict:
    """Re-publish messages the broker lost, retry those a dead worker held, and resume
    fan-outs whose task died."""
    now = now or timezone.now()
    queued_cutoff = now - timedelta(seconds=settings.ALERTFLOW_STALE_QUEUED_SECONDS)
    with transaction.atomic():
        stale = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(status=Message.Status.QUEUED, updated__lt=queued_cutoff)
            .only("id", "channel", "priority", "batched", "status")[:POLL_BATCH]
        )
        if stale:
            Message.objects.filter(pk__in=[m.pk for m in stale]).update(updated=now)
            queue.enqueue_on_commit(stale)
    abandoned = retry_abandoned(now)
    fan_outs = list(
        Notification.objects.filter(status=Notification.Status.FANNING_OUT, progressed__lt=queued_cutoff).values_list(
            "pk", flat=True
        )[:100]
    )
    for notification_id in fan_outs:
        queue.fan_out(notification_id)
    if stale or abandoned or fan_outs:
        logger.info(
            "Swept %d stale message(s), %d abandoned one(s) and %d fan-out(s)", len(stale), abandoned, len(fan_outs)
        )
    return {"messages": len(stale), "abandoned": abandoned, "fan_outs": len(fan_outs)}


def retry_abandoned(now) -> int:
    """Messages a dead worker left in `sending` become due again now (`sending -> retrying`:
    statuses only move forward). The send may or may not have left before the worker died, so
    this is where a duplicate can come from (at least once, counted by bench/drill.py)."""
    cutoff = now - timedelta(seconds=settings.ALERTFLOW_STALE_SENDING_SECONDS)
    with transaction.atomic():
        held = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(status=Message.Status.SENDING, updated__lt=cutoff)
            .values_list("pk", flat=True)[:POLL_BATCH]
        )
        return Message.objects.filter(pk__in=held).move(
            Message.Status.RETRYING, expected=len(held), reason="worker_lost", next_attempt=now, updated=now
        )
