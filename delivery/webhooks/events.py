"""What becomes a webhook event, written to the outbox in the transaction that caused it.

`on_transition` listens to every message status write (notifications/transitions.py) and runs
inside its transaction: the event row and its deliveries commit with the status, or not at all.
It must stay cheap, since it runs for every status write of every tenant: which tenants have
endpoints subscribed to what is read from a per-process cache checked against the tenant's
version in Redis (one Redis GET per write, no database query), so a tenant without endpoints
costs no query at all.

`emit` writes one event of any type, for the other sources (suppressions, pings).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from django.db import IntegrityError, transaction
from django.utils import timezone

from alertflow.versioned_cache import VersionedCache
from notifications.models import Message, Notification
from notifications.progress import message_counts, summarise
from notifications.transitions import Moved
from preferences.models import Recipient
from tenants.models import Category

from .models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from .types import MESSAGE_EVENTS, NOTIFICATION_COMPLETED, SUPPRESSION_CREATED

logger = logging.getLogger(__name__)

# Which endpoints each tenant has, per process, checked against the tenant's version in Redis on
# every use and bumped by every endpoint change (alertflow/versioned_cache.py): a change reaches
# the next status write of every process, and a reload that raced the change is not kept.
_subscriptions = VersionedCache("webhook-subscriptions")

# Statuses a message may still leave on its way out: a notification with one of them is not done.
UNFINISHED = [
    Message.Status.SCHEDULED,
    Message.Status.QUEUED,
    Message.Status.SENDING,
    Message.Status.RETRYING,
    Message.Status.PAUSED,
]
# Below this many unfinished messages, the completion check runs again after commit (see
# `check_completed`).
RECHECK_BELOW = 8

# {tenant id: ((endpoint id, (event types)), ...)}, only enabled endpoints.
Subscriptions = dict[str, tuple[tuple[str, tuple[str, ...]], ...]]


def subscriptions(tenant_ids: Iterable) -> Subscriptions:
    """The enabled endpoints of these tenants and the event types each wants. Redis down: read
    from the database every time."""
    return {str(tenant_id): _subscriptions.get(tenant_id, "all", partial(_load, tenant_id)) for tenant_id in tenant_ids}


def _load(tenant_id) -> tuple[tuple[str, tuple[str, ...]], ...]:
    # A tuple of tuples: the cached value is shared by the process's threads.
    endpoints = WebhookEndpoint.objects.filter(tenant_id=tenant_id, enabled=True)
    return tuple((str(pk), tuple(events)) for pk, events in endpoints.values_list("pk", "events"))


def invalidate(tenant_id) -> None:
    """The tenant's endpoints changed: every process reads them again (now, and once the
    current transaction commits)."""
    _subscriptions.changed(tenant_id)


def endpoints_for(subs: Subscriptions, tenant_id, event_type: str) -> list[str]:
    return [pk for pk, events in subs.get(str(tenant_id), ()) if event_type in events]


# --- the transition listener ----------------------------------------------------------------------


def on_transition(status: str, rows: list[Moved]) -> None:
    """Write the events these moved messages make, for the tenants that subscribed to them."""
    event_type = MESSAGE_EVENTS.get(status)
    may_complete = status not in UNFINISHED
    if event_type is None and not may_complete:
        return
    subs = subscriptions({row.tenant_id for row in rows})
    if not any(subs.values()):
        return
    if event_type is not None:
        wanted = [row for row in rows if endpoints_for(subs, row.tenant_id, event_type)]
        if wanted:
            _message_events(event_type, wanted, subs)
    if may_complete:
        notifications = {
            row.notification_id for row in rows if endpoints_for(subs, row.tenant_id, NOTIFICATION_COMPLETED)
        }
        if notifications:
            check_completed(notifications, subs)


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def _message_events(event_type: str, rows: list[Moved], subs: Subscriptions) -> None:
    external = dict(
        Recipient.objects.filter(pk__in={row.recipient_id for row in rows}).values_list("pk", "external_id")
    )
    _write(
        [
            (
                row.tenant_id,
                event_type,
                {
                    "message_id": str(row.id),
                    "notification_id": str(row.notification_id),
                    "recipient": external.get(row.recipient_id),
                    "channel": row.channel,
                    "status": row.status,
                    "reason": row.reason,
                    "timestamps": {
                        "updated": _iso(row.updated),
                        "sent": _iso(row.sent),
                        "delivered": _iso(row.delivered),
                        "read": _iso(row.read),
                        "failed": _iso(row.failed),
                    },
                },
            )
            for row in rows
        ],
        subs,
    )


def check_completed(notification_ids: set, subs: Subscriptions | None = None, *, recheck: bool = True) -> int:
    """Write `notification.completed` for those of these notifications whose messages are all
    final now (once per notification: the event's key is its id). Returns how many it wrote.

    Two workers finishing a notification's last two messages at the same moment each see the
    other's message unfinished (neither has committed): so when only a few are unfinished, the
    check runs again after commit, where the later of the two sees both.
    """
    written = 0
    notifications = Notification.objects.filter(pk__in=notification_ids, status=Notification.Status.ACCEPTED)
    for notification in notifications.only("id", "tenant_id", "status", "send_at", "created"):
        if subs is None:
            subs = subscriptions([notification.tenant_id])
        if not endpoints_for(subs, notification.tenant_id, NOTIFICATION_COMPLETED):
            continue
        unfinished = list(
            Message.objects.filter(notification=notification, status__in=UNFINISHED).values_list("pk", flat=True)[
                :RECHECK_BELOW
            ]
        )
        if unfinished:
            if recheck and len(unfinished) < RECHECK_BELOW:
                transaction.on_commit(lambda pk=notification.pk: _recheck(pk))
            continue
        counts = message_counts([notification.pk]).get(notification.pk, {})
        data = {"notification_id": str(notification.pk), "status": summarise(notification, counts), "counts": counts}
        written += _write([(notification.tenant_id, NOTIFICATION_COMPLETED, data)], subs, key=str(notification.pk))
    return written


def _recheck(notification_id) -> None:
    try:
        with transaction.atomic():
            check_completed({notification_id}, recheck=False)
    except Exception:  # after the caller's commit: its work is done, whatever happens here
        logger.exception("Could not check whether notification %s completed", notification_id)


def suppressions_created(tenant_id, suppressions: list) -> int:
    """`suppression.created` for each new row of the tenant's suppression list (the receiver of
    `preferences.suppressions.suppression_created`, inside the transaction that inserted them);
    returns how many deliveries it made. The address is the tenant's own data; the event says
    which one may no longer be contacted, and why."""
    subs = subscriptions([tenant_id])
    if not endpoints_for(subs, tenant_id, SUPPRESSION_CREATED):
        return 0
    keys = dict(
        Category.objects.filter(pk__in={s.category_id for s in suppressions if s.category_id}).values_list("pk", "key")
    )
    events = [
        (
            tenant_id,
            SUPPRESSION_CREATED,
            {
                "suppression_id": suppression.pk,
                "channel": suppression.channel,
                "address": suppression.address,
                "category": keys.get(suppression.category_id),
                "reason": suppression.reason,
                "created": _iso(suppression.created),
            },
        )
        for suppression in suppressions
    ]
    return _write(events, subs)


# --- writing --------------------------------------------------------------------------------------


def emit(tenant_id, event_type: str, data: dict, *, key: str = "", endpoints: list[str] | None = None) -> int:
    """Write one event for the tenant's endpoints subscribed to `event_type` (or for `endpoints`),
    in the caller's transaction; returns how many deliveries it made (0: nobody wants it)."""
    if endpoints is None:
        endpoints = endpoints_for(subscriptions([tenant_id]), tenant_id, event_type)
    if not endpoints:
        return 0
    return _write([(tenant_id, event_type, data)], {str(tenant_id): [(pk, [event_type]) for pk in endpoints]}, key=key)


def _write(events: list[tuple], subs: Subscriptions, *, key: str = "") -> int:
    """Insert events and one pending delivery per subscribed endpoint; returns the deliveries."""
    wanted = {pk for tenant_id, event_type, _data in events for pk in endpoints_for(subs, tenant_id, event_type)}
    if not wanted:
        return 0
    # The subscriptions may name an endpoint deleted since they were read (by a transaction
    # still running when the delete committed): a delivery to it would fail the deferred foreign
    # key at commit, and the status change with it.
    alive = {str(pk) for pk in WebhookEndpoint.objects.filter(pk__in=wanted).values_list("pk", flat=True)}
    now = timezone.now()
    rows, deliveries = [], []
    for tenant_id, event_type, data in events:
        endpoints = [pk for pk in endpoints_for(subs, tenant_id, event_type) if pk in alive]
        if not endpoints:
            continue
        event = WebhookEvent(tenant_id=tenant_id, type=event_type, key=key, created=now)
        event.payload = {"id": str(event.id), "type": event_type, "created": now.isoformat(), "data": data}
        rows.append(event)
        deliveries += [
            WebhookDelivery(
                tenant_id=tenant_id,
                event=event,
                endpoint_id=pk,
                event_type=event_type,
                next_attempt=now,
                created=now,
                updated=now,
            )
            for pk in endpoints
        ]
    if not rows:
        return 0
    if key:
        # Once per key: a second writer's insert fails on the constraint, and only its savepoint
        # is undone (not the status change it is part of).
        try:
            with transaction.atomic():
                WebhookEvent.objects.bulk_create(rows)
        except IntegrityError:
            return 0
    else:
        WebhookEvent.objects.bulk_create(rows)
    WebhookDelivery.objects.bulk_create(deliveries)
    return len(deliveries)
