"""Timers live in PostgreSQL, not in the broker (DESIGN section 3).

`enqueue_due` (every second) retries claims whose lease ran out (a killed worker), expires what
waited past its `expires_at`, and moves messages whose `next_attempt` has come (scheduled sends,
quiet-hours deferrals, retries) to `queued` and publishes them (through the outbox, as every
publish); `sweep_stale` re-publishes what the broker lost (a Redis that lost its lists, never a
message merely waiting in a backlog or in the outbox).
Both lock rows with
`FOR UPDATE SKIP LOCKED`, so several beat or worker processes never double-enqueue a row.
"""

import logging
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from alertflow.logging import acting_for, current_request_id
from alertflow.queues import CHANNEL_QUEUES, DEFAULT_QUEUE, PRIORITY_LEVELS
from notifications import lifecycle, queue
from notifications.models import Message, Notification

from . import state

logger = logging.getLogger(__name__)

# Messages waiting to be sent, which expiry may end.
WAITING = [Message.Status.SCHEDULED, Message.Status.QUEUED, Message.Status.RETRYING]
# Rows one poll handles; a larger backlog is drained by the next polls a second apart.
POLL_BATCH = 2000


def enqueue_due(now=None) -> int:
    """Retry what a dead worker held, expire what waited past its `expires_at`, then queue what
    is due (but hold a paused run's, and cancel a cancelled notification's); return how many
    were queued."""
    now = now or timezone.now()
    retry_lapsed(now)
    expire_overdue(now)
    with transaction.atomic():
        due = list(
            _for_their_requests(Message.objects.select_for_update(skip_locked=True, of=("self",)))
            .annotate(run_status=F("notification__status"))
            .filter(status__in=[Message.Status.SCHEDULED, Message.Status.RETRYING], next_attempt__lte=now)
            .order_by("next_attempt")
            .only("id", "notification_id", "channel", "priority", "batched", "status", "updated")[:POLL_BATCH]
        )
        due = cancel_for_cancelled(hold_paused(due, now), now)
        if not due:
            return 0
        Message.objects.filter(pk__in=[m.pk for m in due]).move(
            Message.Status.QUEUED, expected=len(due), queued=now, updated=now, next_attempt=None
        )
        for message in due:
            # `updated` travels with the task (notifications/queue.py, QUEUED_HEADER).
            message.status, message.updated = Message.Status.QUEUED, now
        enqueue_under_their_requests(due)
    return len(due)


def hold_paused(due: list[Message], now) -> list[Message]:
    """Of due messages (loaded with their notification's status as `run_status`), those that may
    be queued. A paused campaign run's waiting messages are all `paused` (campaigns.pause); one
    that comes due during the pause was in a worker's hands then (its retry, or its lease ran
    out since): it is held now, with the others, and its run's resume moves it on.

    The run is locked first, skipping one another transaction holds (its pause, resume or
    cancel, which may wait on these messages' locks): such messages wait for the next poll."""
    maybe_paused = {m.notification_id for m in due if m.run_status == Notification.Status.PAUSED}
    if not maybe_paused:
        return due
    paused = set(
        Notification.objects.select_for_update(skip_locked=True)
        .filter(pk__in=maybe_paused, status=Notification.Status.PAUSED)
        .values_list("pk", flat=True)
    )
    held = [m.pk for m in due if m.notification_id in paused]
    if held:
        Message.objects.filter(pk__in=held).move(Message.Status.PAUSED, expected=len(held), updated=now)
    return [m for m in due if m.notification_id not in maybe_paused]


def cancel_for_cancelled(due: list[Message], now) -> list[Message]:
    """Of due messages (loaded with their notification's status as `run_status`), those whose
    notification is not cancelled. A cancel (a notification's, a campaign run's) cancels every
    message that waits; one that comes due since was in a worker's hands then and comes back
    (its retry, or its lease ran out): it is cancelled now, as the cancel would have, instead of
    sent after it. A cancelled notification stays so: its row needs no lock."""
    cancelled = [m.pk for m in due if m.run_status == Notification.Status.CANCELLED]
    if not cancelled:
        return due
    lifecycle.cancel_waiting(Message.objects.filter(pk__in=cancelled), now, expected=len(cancelled))
    return [m for m in due if m.run_status != Notification.Status.CANCELLED]


def _for_their_requests(messages):
    """`messages` with the id of the request that made each (`request_id`, its notification's)."""
    return messages.annotate(request_id=F("notification__request_id"))


def enqueue_under_their_requests(messages: list[Message]) -> None:
    """`queue.enqueue_on_commit` under the id of the request that made each message (loaded by
    `_for_their_requests`), not the poller's own task id: the delivery lines of a scheduled
    send, a retry or a lost publish carry the request's id like those of a send that went at
    once. A notification made before it was stored goes under the poller's id."""
    by_request = defaultdict(list)
    for message in messages:
        by_request[message.request_id or current_request_id()].append(message)
    for request_id, group in by_request.items():
        with acting_for(request_id):
            queue.enqueue_on_commit(group)


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


# A message is taken for lost only if the oldest task waiting in its list holds messages queued
# this much later: two processes may publish in the other order than they queued, by the time a
# transaction takes to commit (notifications/queue.py).
LOST_PUBLISH_MARGIN = timedelta(seconds=30)


def sweep_stale(now=None) -> dict:
    """Re-publish messages whose published task the broker lost, and resume fan-outs whose task
    died. A message waiting in a long backlog is left alone: each sweep publishing the backlog
    again would only make it longer (notifications/queue.py says how the two are told apart).
    (Messages a dead worker held come back sooner, when their lease runs out: `retry_lapsed`.)"""
    now = now or timezone.now()
    queued_cutoff = now - timedelta(seconds=settings.ALERTFLOW_STALE_QUEUED_SECONDS)
    try:
        waiting = queue.oldest_waiting([*CHANNEL_QUEUES.values(), DEFAULT_QUEUE])
    except Exception as exc:  # the broker is down: nothing can be told lost, nor published
        logger.warning("Broker unreachable, nothing swept: %s", exc)
        waiting = None
    # Whatever was queued after the oldest row still in the outbox may be waiting there (the
    # relay is behind, or the broker was down): its publish is not lost, only not done yet.
    unrelayed = queue.oldest_unrelayed()
    if unrelayed is not None:
        queued_cutoff = min(queued_cutoff, unrelayed - LOST_PUBLISH_MARGIN)
    with transaction.atomic():
        stale = list(
            _for_their_requests(Message.objects.select_for_update(skip_locked=True, of=("self",)))
            .filter(_lost_publishes(queued_cutoff, waiting))
            .only("id", "channel", "priority", "batched", "status", "updated")[:POLL_BATCH]
        )
        if stale:
            Message.objects.filter(pk__in=[m.pk for m in stale]).update(updated=now, next_attempt=None)
            for message in stale:
                message.updated = now
            enqueue_under_their_requests(stale)
        fan_outs = _stalled_fan_outs(queued_cutoff, waiting)
        for notification_id, checkpoint in fan_outs:
            # From its checkpoint: if its step was only waiting after all, whichever of the two
            # runs second finds the checkpoint moved and stops (notifications/services.py, fan_out_step).
            queue.fan_out(notification_id, after=checkpoint)
    if stale or fan_outs:
        logger.info("Swept %d stale message(s) and %d fan-out(s)", len(stale), len(fan_outs))
    return {"messages": len(stale), "fan_outs": len(fan_outs)}


def _lost_publishes(queued_cutoff, waiting) -> Q:
    """Queued messages, stale, that the broker cannot be holding: their list is empty, or its
    oldest task holds messages queued after them. Nothing when the broker is unreachable."""
    lost = Q(pk__in=[])
    if waiting is None:
        return lost
    for channel, queue_name in CHANNEL_QUEUES.items():
        for priority in PRIORITY_LEVELS:
            for batched in (False, True):
                oldest = waiting.get((queue_name, queue.priority_step(priority, batched)))
                cutoff = queued_cutoff if oldest is None else min(queued_cutoff, oldest - LOST_PUBLISH_MARGIN)
                lost |= Q(channel=channel, priority=priority, batched=batched, updated__lt=cutoff)
    return Q(status=Message.Status.QUEUED) & lost


def _stalled_fan_outs(queued_cutoff, waiting) -> list[tuple]:
    """(id, checkpoint) of the fan-outs that wrote nothing lately and whose next step cannot be
    waiting in the default queue (the same test as for messages, on the fan-out's list)."""
    cutoff = queued_cutoff
    if waiting is not None:
        oldest = waiting.get((DEFAULT_QUEUE, queue.priority_step("normal", batched=False)))
        if oldest is not None:
            cutoff = min(cutoff, oldest - LOST_PUBLISH_MARGIN)
    return list(
        Notification.objects.filter(status=Notification.Status.FANNING_OUT, progressed__lt=cutoff).values_list(
            "pk", "fanned_out"
        )[:100]
    )
