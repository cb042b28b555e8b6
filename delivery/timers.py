"""Timers live in PostgreSQL, not in the broker (DESIGN section 3).

`enqueue_due` (every second) retries claims whose lease ran out (a killed worker), expires what
waited past its `expires_at`, and moves messages whose `next_attempt` has come (scheduled sends,
quiet-hours deferrals, retries) to `queued` and publishes them; `sweep_stale` re-publishes what
the broker lost (a publish during an outage). Both lock rows with
`FOR UPDATE SKIP LOCKED`, so several beat or worker processes never double-enqueue a row.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Q, Value, When
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
    """Retry what a dead worker held, expire what waited past its `expires_at`, then queue what
    is due; return how many were queued."""
    now = now or timezone.now()
    retry_lapsed(now)
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


def locked_ids(*conditions, **lookups) -> list:
    """Up to a poll's worth of matching message ids, locked for this transaction; rows another
    poller holds are skipped, not waited for."""
    matching = Message.objects.select_for_update(skip_locked=True).filter(*conditions, **lookups)
    return list(matching.values_list("pk", flat=True)[:POLL_BATCH])


def retry_lapsed(now) -> int:
    """Claims whose lease ran out (their worker died or hangs) become due again now
    (`sending -> retrying`, forward only); returns how many.

    Whatever that worker had sent but not yet recorded is sent again: at most its unflushed
    part of a batch (`pipeline.FLUSH_EVERY`). Claims made before leases existed have none, and
    count from their last update.
    """
    lease = timedelta(seconds=settings.ALERTFLOW_LEASE_SECONDS)
    with transaction.atomic():
        lapsed = locked_ids(
            Q(lease_until__lt=now) | Q(lease_until__isnull=True, updated__lt=now - lease),
            status=Message.Status.SENDING,
        )
        if not lapsed:
            return 0
        retried = Message.objects.filter(pk__in=lapsed).move(
            Message.Status.RETRYING,
            expected=len(lapsed),
            reason="lease_expired",
            lease_until=None,
            next_attempt=now,
            updated=now,
        )
    logger.warning(
        "Retrying %d message(s) whose worker's lease ran out; any it sent but had not recorded are sent again",
        retried,
    )
    return retried


def expire_overdue(now) -> int:
    """Waiting messages (scheduled, queued, retrying) past their `expires_at` become `expired`,
    with the reason saying where they waited. Returns how many."""
    with transaction.atomic():
        overdue = locked_ids(status__in=WAITING, expires_at__lte=now)
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
    """Re-publish messages the broker lost and resume fan-outs whose task died. (Messages a dead
    worker held come back sooner, when their lease runs out: `retry_lapsed`.)"""
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
    fan_outs = list(
        Notification.objects.filter(status=Notification.Status.FANNING_OUT, progressed__lt=queued_cutoff).values_list(
            "pk", flat=True
        )[:100]
    )
    for notification_id in fan_outs:
        queue.fan_out(notification_id)
    if stale or fan_outs:
        logger.info("Swept %d stale message(s) and %d fan-out(s)", len(stale), len(fan_outs))
    return {"messages": len(stale), "fan_outs": len(fan_outs)}
