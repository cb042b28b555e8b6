"""What happens to accepted notifications later: cancel, reschedule, replay dead letters.

Every change is one conditional UPDATE on the statuses it may leave, so it races safely with
the workers' claim (`queued -> sending`): whichever statement runs first wins, and a message
is never both cancelled and sent.
"""

from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alertflow.errors import ApiError
from preferences.services import Outcome, cached_preferences, cached_preferences_many, decide

from . import queue
from .models import Message, Notification

# What replay takes back: the dead letters.
DEAD_LETTERS = [Message.Status.FAILED, Message.Status.EXPIRED]
# Why a paused campaign run's messages are neither rescheduled nor replayed.
PAUSED_RUN = "This notification's campaign run is paused: resume it first."
# Replays of one call, at most: a larger backlog is replayed in several calls.
MAX_REPLAY = 10_000


@transaction.atomic
def cancel(notification: Notification) -> dict:
    """Cancel everything not yet sent, including messages a bulk send has yet to write (the
    API's and the admin's cancel).

    A notification with nothing left to stop answers 409 `nothing_to_cancel`: its fan-out is
    done and every message has left or settled (none waits, none is in a worker's hands).
    Marking it cancelled would report a delivered notification as cancelled. One message in a
    worker's hands is enough to cancel: if it comes back (a retry, a lease that ran out), the due
    poller cancels it."""
    cancelled, fanned_out = cancel_unsent(notification)
    if fanned_out and nothing_left_to_stop(notification.pk, cancelled):
        raise ApiError(
            409,
            "nothing_to_cancel",
            "Every message of this notification has been sent or has settled: nothing is left to cancel.",
        )
    return {"id": str(notification.pk), "status": Notification.Status.CANCELLED, "cancelled_messages": cancelled}


def nothing_left_to_stop(notification_id, moved: int) -> bool:
    """After a cancel or a pause of a notification whose fan-out is done moved `moved` of its
    messages: whether it found nothing to stop, none waiting to be sent (none moved) and none in
    a worker's hands. One a worker holds may come back (a transient failure's retry, a lease
    that ran out), and the due poller then cancels or pauses it, so it is something to stop.
    Read in the caller's transaction, under the notification's lock."""
    return (
        not moved
        and not Message.objects.filter(notification_id=notification_id, status=Message.Status.SENDING).exists()
    )


def cancel_unsent(notification: Notification) -> tuple[int, bool]:
    """Lock the notification, mark it cancelled and cancel its messages that wait to be sent,
    in the caller's transaction. Returns how many it cancelled, and whether its fan-out was done
    (it was `accepted`)."""
    notification = Notification.objects.select_for_update(of=("self",)).get(pk=notification.pk)
    if notification.status == Notification.Status.CANCELLED:
        raise ApiError(409, "already_cancelled", "This notification was already cancelled.")
    fanned_out = notification.status == Notification.Status.ACCEPTED
    now = timezone.now()
    # Locking the row also waits for a fan-out chunk in progress; the next chunk sees the status.
    notification.status, notification.cancelled = Notification.Status.CANCELLED, now
    notification.save(update_fields=["status", "cancelled"])
    # Only messages that have not left yet move (Message.ENTERED_FROM): a claim that won the
    # race keeps its message, which is then sent (once: a retry of it is cancelled when it comes
    # due, delivery/timers.py).
    cancelled = cancel_waiting(Message.objects.filter(notification=notification), now)
    return cancelled, fanned_out


def cancel_waiting(messages, now: datetime, expected: int | None = None) -> int:
    """Cancel those of `messages` (a queryset) that still wait to be sent (scheduled, queued,
    retrying, paused: `Message.ENTERED_FROM`), as a cancel writes them; returns how many. What a
    worker holds or what has left is not touched. `expected`: as `Message.objects.move`'s."""
    return messages.move(
        Message.Status.CANCELLED, expected=expected, reason="cancelled", next_attempt=None, updated=now
    )


@transaction.atomic
def reschedule(notification: Notification, send_at: datetime) -> dict:
    """Move a scheduled notification's unsent messages to a new time (quiet hours still apply)."""
    notification = (
        Notification.objects.select_for_update(of=("self",)).select_related("category").get(pk=notification.pk)
    )
    if notification.status == Notification.Status.CANCELLED:
        raise ApiError(409, "already_cancelled", "A cancelled notification cannot be rescheduled.")
    if notification.status == Notification.Status.PAUSED:
        raise ApiError(409, "run_paused", PAUSED_RUN)
    now = timezone.now()
    if send_at <= now:
        raise ApiError(
            400, "validation_error", "send_at: must be in the future.", {"fields": {"send_at": ["In the past."]}}
        )
    scheduled = list(
        Message.objects.select_for_update()
        .filter(notification=notification, status=Message.Status.SCHEDULED)
        .select_related("recipient")
    )
    if not scheduled and notification.status != Notification.Status.FANNING_OUT:
        raise ApiError(409, "not_scheduled", "Nothing of this notification is waiting to be sent.")
    notification.send_at = send_at
    notification.save(update_fields=["send_at"])
    preferences = cached_preferences_many(list({m.recipient_id: m.recipient for m in scheduled}.values()))
    # The expiry window counts from the send time: it moves with it.
    expires_at = notification.message_expiry()
    for message in scheduled:
        entry = preferences[message.recipient_id]
        decision = decide(message.recipient, notification.category, message.channel, at=send_at, entry=entry)
        deferred = decision.outcome == "deferred"
        message.next_attempt = decision.until if deferred else send_at
        message.reason = decision.reason if deferred else ""
        message.updated, message.expires_at = now, expires_at
    Message.objects.bulk_update(scheduled, ["next_attempt", "reason", "updated", "expires_at"])
    return {"id": str(notification.id), "send_at": send_at, "rescheduled_messages": len(scheduled)}


def replay(messages) -> int:
    """Put dead letters (failed or expired messages) back in the queue with a fresh attempt
    budget and a fresh expiry; return how many.

    `messages` is a queryset already cut down to one tenant; only its dead letters move, and
    not those of a paused campaign run.
    """
    now = timezone.now()
    with transaction.atomic():
        chosen = list(
            messages.select_related(None)
            .prefetch_related(None)
            .select_related("notification")
            .select_for_update(skip_locked=True, of=("self",))
            .filter(status__in=DEAD_LETTERS)
            # A paused campaign run sends nothing until it resumes (campaigns.pause).
            .exclude(notification__status=Notification.Status.PAUSED)
            .only("id", "channel", "priority", "batched", "notification__expires_in")[:MAX_REPLAY]
        )
        if not chosen:
            return 0
        # A replay is a new send: it gets the whole window its notification gave it, from now.
        by_window = defaultdict(list)
        for message in chosen:
            by_window[message.notification.expires_in or settings.ALERTFLOW_EXPIRES_IN[message.priority]].append(
                message.pk
            )
        for seconds, ids in by_window.items():
            Message.objects.filter(pk__in=ids, status__in=DEAD_LETTERS).move(
                Message.Status.QUEUED,
                expected=len(ids),
                attempts=0,
                reason="replayed",
                next_attempt=None,
                failed=None,
                expires_at=now + timedelta(seconds=seconds),
                queued=now,
                updated=now,
            )
        for message in chosen:
            message.status = Message.Status.QUEUED
        queue.enqueue_on_commit(chosen)
    return len(chosen)


def withdraw_opted_out(sender, recipient, channel: str, **kwargs) -> int:
    """`preferences.signals.opted_out` receiver (notifications/apps.py): the recipient's messages
    on `channel` that still wait to be sent (scheduled, queued, retrying) and that their
    preferences now block are cancelled, with the preference's reason; returns how many.

    Preferences are otherwise decided at accept (DESIGN section 3), but an unsubscribe must stop
    what is already planned too: a campaign message scheduled for the recipient's morning, or
    one deferred by quiet hours, would otherwise arrive after the person asked for no more.
    Runs inside the opt-out's transaction. A message a worker has claimed meanwhile is left to
    go (the move is forward-only); critical mail is never blocked, so never withdrawn.
    """
    waiting = list(
        Message.objects.filter(
            recipient=recipient, channel=channel, status__in=Message.ENTERED_FROM[Message.Status.CANCELLED]
        ).select_related("notification__category")
    )
    if not waiting:
        return 0
    entry = cached_preferences(recipient)
    blocked = defaultdict(list)
    for message in waiting:
        decision = decide(recipient, message.notification.category, channel, entry=entry)
        if decision.outcome == Outcome.BLOCKED:
            blocked[decision.reason].append(message.pk)
    now = timezone.now()
    return sum(
        Message.objects.filter(pk__in=ids).move(
            Message.Status.CANCELLED, expected=len(ids), reason=reason, next_attempt=None, updated=now
        )
        for reason, ids in blocked.items()
    )
