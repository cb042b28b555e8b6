"""Where a notification is: its `status` summarises the statuses of its messages (DESIGN 3).

Read with one GROUP BY over the notification's messages (`message_counts`, on the index
`message_once_per_recipient`, which starts with the notification), for one notification or for
a whole page of the history: never by loading the messages, so a 10,000-recipient bulk send
costs one index scan, and a page of 50 notifications one query.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping

from django.db import models
from django.db.models import Count
from django.utils import timezone

from .models import Message, Notification


class Summary(models.TextChoices):
    SCHEDULED = "scheduled"  # nothing has started; some message waits for its time
    QUEUED = "queued"  # nothing has started; every message waits for a worker
    IN_PROGRESS = "in_progress"  # some are being sent or retried, or some are done and some not
    COMPLETED = "completed"  # all done, none failed (suppressed and cancelled ones count as done)
    PARTIALLY_FAILED = "partially_failed"  # all done: some sent, some failed or expired
    FAILED = "failed"  # all done, none sent, some failed
    EXPIRED = "expired"  # all done, none sent, none failed, some expired before they could leave
    CANCELLED = "cancelled"  # cancelled by the tenant (the counts say what had left before)


# Message statuses by what they mean for the notification. `expired` is a final status of its
# own (a message that could not leave before its expiry).
# A paused campaign run's messages wait for their time too, once the run resumes.
WAITING_FOR_TIME = {Message.Status.SCHEDULED, Message.Status.PAUSED}
WAITING_FOR_WORKER = {Message.Status.QUEUED}
UNDER_WAY = {Message.Status.SENDING, Message.Status.RETRYING}
SENT = {Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ}
UNDELIVERED = {Message.Status.FAILED, Message.Status.BOUNCED, Message.Status.COMPLAINED}
EXPIRED = {Message.Status.EXPIRED}


def message_counts(notification_ids: Iterable) -> dict:
    """{notification id: {message status: count}} for these notifications, in one query;
    statuses no message has are left out, and so is a notification without messages."""
    counts: dict = defaultdict(dict)
    rows = (
        Message.objects.filter(notification_id__in=list(notification_ids))
        .values_list("notification_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for notification_id, status, n in rows:
        counts[notification_id][status] = n
    return counts


def summarise(notification: Notification, counts: Mapping[str, int]) -> str:
    """The notification's status from its own state and its messages' counts by status."""
    if notification.status == Notification.Status.CANCELLED:
        return Summary.CANCELLED

    def total(statuses) -> int:
        return sum(counts.get(status, 0) for status in statuses)

    waiting_for_time, waiting_for_worker = total(WAITING_FOR_TIME), total(WAITING_FOR_WORKER)
    # A paused run is not done either: its fan-out, or its paused messages, continue at the resume.
    fanning_out = notification.status in (Notification.Status.FANNING_OUT, Notification.Status.PAUSED)
    if fanning_out or waiting_for_time or waiting_for_worker or total(UNDER_WAY):
        settled = sum(counts.values()) - waiting_for_time - waiting_for_worker
        if settled:
            return Summary.IN_PROGRESS
        if waiting_for_worker:
            return Summary.QUEUED
        later = notification.send_at is not None and notification.send_at > timezone.now()
        return Summary.SCHEDULED if waiting_for_time or later else Summary.QUEUED
    sent, undelivered, expired = total(SENT), total(UNDELIVERED), total(EXPIRED)
    if sent and (undelivered or expired):
        return Summary.PARTIALLY_FAILED
    if undelivered:
        return Summary.FAILED
    if expired:
        return Summary.EXPIRED
    return Summary.COMPLETED
