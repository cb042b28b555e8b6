"""Accepting a notification: who gets it, on which channels, when (DESIGN section 3, step 1).

`accept` runs in the web request, in one transaction. Single sends write every message at once;
bulk and topic sends write the notification and answer, and `fan_out` (a task) writes the
messages in chunks, each chunk in its own transaction with the notification's cursor, so a
crash resumes where it stopped instead of starting over or sending twice.
"""

import hashlib
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from alertflow.auth import unusable_key
from alertflow.channels import CHANNELS
from alertflow.compiled import CompiledInsert
from alertflow.errors import ApiError, is_deadlock
from alertflow.together import run_together
from preferences import suppressions
from preferences.models import Device, Recipient
from preferences.services import cached_preferences_many, decide, find_recipient, upsert_recipient
from templates_app.models import Template
from templates_app.services import resolve_version, versions_for_sends
from tenants import usage
from tenants.models import Category, Tenant
from tenants.services import unknown_category

from . import analytics, campaigns, queue, signals, stats
from .expiry import expires_in_for
from .models import Message, Notification
from .progress import summarise

logger = logging.getLogger(__name__)

# How many recipients one fan-out transaction writes (with bulk_create).
FAN_OUT_CHUNK = 500
# A repeated idempotency key within this window answers the first response (DESIGN 6).
IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Reasons that mean "the recipient said no", as opposed to "we cannot reach them".
PREFERENCE_REASONS = {"channel_opted_out", "category_opted_out"}

# The accept's INSERTs, built once per process (and number of rows) instead of by Django's SQL
# compiler on every request, where `save` and `bulk_create` took 1.1 of its 6.1 ms in-process.
# As `bulk_create`: no model signals (Notification and Message have no receivers).
_insert_notification = CompiledInsert(Notification)
_insert_messages = CompiledInsert(Message)


@dataclass(frozen=True)
class Accepted:
    notification: Notification
    body: dict
    replayed: bool = False


def request_fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def accept(tenant: Tenant, payload: dict) -> Accepted:
    """Accept a validated send request (see `SendSerializer`); return the 202 body.

    A repeated idempotency key answers the first response and writes nothing; the same key
    with a different body is a 409. Raises ApiError 403 `preference_rejected` when the
    recipient's preferences block every requested channel.
    """
    key = payload.get("idempotency_key")
    fingerprint = request_fingerprint(payload)
    if key:
        previous = _previous_response(tenant, key, fingerprint)
        if previous is not None:
            return previous
    try:
        with transaction.atomic():
            notification = _new_notification(tenant, payload, fingerprint)
            # Ids are made here, not by the database, so the response is known before the
            # INSERT and stored with it (no second write).
            if notification.audience == Notification.Audience.SINGLE:
                messages, body = _plan_single(notification, payload["recipient"])
            else:
                messages, body = [], {"id": str(notification.id), "status": summarise(notification, {})}
                queue.fan_out(notification.id)
            notification.response = body
            charge = usage.Charge.of(tenant, send_cost(notification, payload, messages))
            # The writes as one statement (one round trip), in this order: the quota's counter
            # rows (by channel) and then the analytics rows are locked last, until the commit,
            # and every concurrent send of the tenant queues on them.
            writes = [
                _insert_notification.statement([notification]),
                _insert_messages.statement(messages) if messages else None,
                queue.outbox_statement(messages),
            ]
            counts = run_together([*writes, *charge.statements, analytics.written_statement(messages)])
            CompiledInsert.saved([notification, *messages], connection.alias)
            # A refused charge (429) rolls the writes back.
            charge.settle(counts[len(writes) : len(writes) + len(charge.statements)])
            stats.written(messages)
    except IntegrityError:
        # A concurrent request with the same key committed first: answer what it answered.
        previous = _previous_response(tenant, key, fingerprint) if key else None
        if previous is None:
            _refuse_if_deleted_meanwhile(tenant, payload)
            raise
        return previous
    except OperationalError as exc:
        # Aborted to break a deadlock with the tenant's deletion (tenants.services.delete_tenants),
        # which goes on: answered as the send of a deleted tenant once it is (401).
        if is_deadlock(exc):
            _refuse_if_deleted_meanwhile(tenant, payload)
        raise
    return Accepted(notification, body)


def _refuse_if_deleted_meanwhile(tenant: Tenant, payload: dict) -> None:
    """After a send's commit failed (or PostgreSQL aborted it to break a deadlock with a
    deletion): raise what the send would have been answered had its tenant, category or
    recipient not existed, if another request deleted it since the send looked it up (the
    authentication, the serializer, the process's caches). The send locks none of them; the
    foreign keys, checked at the commit (Django makes them deferrable, on PostgreSQL and SQLite
    alike), refuse the INSERTs instead. The queries are paid on this failure only, never by a
    send that commits."""
    # The tenant first: its deletion cascades to its categories and recipients, and the answer
    # is the one its key gets from now on (401), not a 400 about what went with it. Its row read
    # locked (FOR NO KEY UPDATE: no send waits for it), so a deletion still running is waited for.
    with transaction.atomic():
        if not Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk).exists():
            raise unusable_key()
    category = payload.get("category")
    if category is not None and not Category.objects.filter(pk=category.pk).exists():
        raise unknown_category(category.key)
    # A recipient given as an object was upserted in the send's transaction, its row locked
    # (SELECT ... FOR UPDATE) or new, so no other request could delete it before the commit.
    target = payload.get("recipient")
    if isinstance(target, str) and not Recipient.objects.filter(tenant=tenant, external_id=target).exists():
        raise unknown_recipient(target)


def send_cost(notification: Notification, payload: dict, messages: list[Message]) -> dict[str, int]:
    """What a send costs against the monthly quotas, per channel: a single send its messages
    that will be attempted (not the suppressed); a bulk or topic send, whose messages are
    written later, one per recipient per channel, known now so it is refused whole or not at all."""
    if notification.audience == Notification.Audience.SINGLE:
        costs = dict.fromkeys(notification.channels, 0)
        for message in messages:
            if message.status != Message.Status.SUPPRESSED:
                costs[message.channel] += 1
        return costs
    if notification.audience == Notification.Audience.BULK:
        recipients = len(payload["recipients"])
    else:
        recipients = payload["topic"].subscriptions.count()
    return dict.fromkeys(notification.channels, recipients)


def _previous_response(tenant: Tenant, key: str, fingerprint: str) -> Accepted | None:
    previous = Notification.objects.filter(tenant=tenant, idempotency_key=key).first()
    if previous is None:
        return None
    if previous.created < timezone.now() - IDEMPOTENCY_WINDOW:
        # Older than the window: the key is free again. Concurrent requests that both release
        # it still meet at the unique constraint, and the loser replays the winner's response.
        Notification.objects.filter(pk=previous.pk, idempotency_key=key).update(idempotency_key=None)
        return None
    if previous.request_hash != fingerprint:
        raise ApiError(
            409, "idempotency_conflict", "This idempotency key was used for a different request.", {"key": key}
        )
    return Accepted(previous, previous.response, replayed=True)


def _new_notification(tenant: Tenant, payload: dict, fingerprint: str) -> Notification:
    """The notification for a request, not yet saved."""
    key = payload.get("idempotency_key")
    if "recipient" in payload:
        audience, targets = Notification.Audience.SINGLE, None
    elif "recipients" in payload:
        audience, targets = Notification.Audience.BULK, payload["recipients"]
    else:
        audience, targets = Notification.Audience.TOPIC, None
    return Notification(
        tenant=tenant,
        category=payload.get("category"),
        audience=audience,
        status=Notification.Status.ACCEPTED
        if audience == Notification.Audience.SINGLE
        else Notification.Status.FANNING_OUT,
        priority=payload["priority"],
        channels=payload["channels"],
        template=payload.get("template") or "",
        template_version=payload.get("template_version"),
        content=payload.get("content"),
        data=payload.get("data") or {},
        metadata=payload.get("metadata") or {},
        send_at=payload.get("send_at"),
        expires_in=expires_in_for(payload.get("category"), payload["priority"], payload.get("expires_in")),
        targets=targets,
        topic=payload["topic"].key if payload.get("topic") else "",
        idempotency_key=key or None,
        request_hash=fingerprint,
    )


def _plan_single(notification: Notification, target) -> tuple[list[Message], dict]:
    recipient = resolve_recipient(notification.tenant, target)
    messages = plan(notification, [recipient])
    if all(m.status == Message.Status.SUPPRESSED for m in messages):
        reasons = {m.channel: m.reason for m in messages}
        if PREFERENCE_REASONS & set(reasons.values()):
            raise ApiError(
                403,
                "preference_rejected",
                "The recipient's preferences block every channel asked for.",
                {"channels": reasons},
            )
        if any(reason.startswith(suppressions.REASON_PREFIX) for reason in reasons.values()):
            raise ApiError(
                422,
                "address_suppressed",
                "The recipient's addresses on the channels asked for are suppressed (a bounce, a complaint, "
                "an SMS STOP) or missing.",
                {"channels": reasons},
            )
        raise ApiError(
            422,
            "no_deliverable_channel",
            "The recipient has no address on any channel asked for.",
            {"channels": reasons},
        )
    return messages, {
        "id": str(notification.id),
        "status": summarise(notification, Counter(m.status for m in messages)),
        "messages": [
            {
                "id": str(m.id),
                "recipient": recipient.external_id,
                "channel": m.channel,
                "status": m.status,
                "reason": m.reason,
            }
            for m in messages
        ],
    }


def resolve_recipient(tenant: Tenant, target) -> Recipient:
    """An external id names an existing recipient; an object upserts one."""
    if isinstance(target, dict):
        fields = {k: v for k, v in target.items() if k != "id"}
        return upsert_recipient(tenant, target["id"], fields)[0]
    recipient = find_recipient(tenant, target)
    if recipient is None:
        raise unknown_recipient(target)
    return recipient


def unknown_recipient(external_id: str) -> ApiError:
    """The 400 for a recipient id the tenant has not got (a single send's)."""
    return ApiError(400, "unknown_recipient", f"No recipient with id {external_id!r}.", {"recipient": external_id})


def plan(notification: Notification, recipients: list[Recipient], send_times: dict | None = None) -> list[Message]:
    """Decide, for each recipient and channel, whether a message is queued, scheduled or
    suppressed (and why). Returns unsaved messages; the caller writes them in bulk.

    `send_times` ({recipient pk: when}) gives recipients their own send time (a campaign in
    each recipient's local time); otherwise everyone gets the notification's `send_at`.
    """
    now = timezone.now()
    send_at = max(notification.send_at or now, now)
    expires_at = notification.message_expiry()
    batched = notification.audience != Notification.Audience.SINGLE
    devices = defaultdict(list)
    if any(CHANNELS[channel].uses_devices for channel in notification.channels):
        for device in (
            Device.objects.active().filter(recipient__in=recipients).only("recipient_id", "platform", "token")
        ):
            devices[device.recipient_id].append(device)
    # Every address of the chunk checked against the suppression list in one query.
    destinations = {
        (recipient.pk, channel): [d.to for d in CHANNELS[channel].destinations(recipient, devices[recipient.pk])]
        for recipient in recipients
        for channel in notification.channels
    }
    suppressed = suppressions.blocked(
        notification.tenant_id,
        {(channel, to) for (_pk, channel), tos in destinations.items() for to in tos},
        [notification.category_id],
    )
    versions = {}
    # A critical category ignores preferences (decide() returns before reading them).
    critical = notification.category is not None and notification.category.critical
    preferences = {} if critical else cached_preferences_many(recipients)
    messages = []
    for recipient in recipients:
        at = send_times[recipient.pk] if send_times else send_at
        recipient_expiry = notification.message_expiry(at) if send_times else expires_at
        version = _template_version(notification, recipient, versions)
        for channel in notification.channels:
            message = Message(
                tenant_id=notification.tenant_id,
                notification=notification,
                recipient=recipient,
                channel=channel,
                priority=notification.priority,
                batched=batched,
                template_version=version,
                created=now,
                updated=now,
                expires_at=recipient_expiry,
            )
            if notification.template and version is None:
                message.status, message.reason, message.failed = Message.Status.FAILED, "template_unavailable", now
                message.error = (
                    f"template_unavailable: {notification.template!r} was deleted after the send was accepted"
                )
            else:
                has_device = bool(devices[recipient.pk])
                suppression = suppressions.reason_for_all(
                    suppressed, channel, destinations[recipient.pk, channel], notification.category_id
                )
                _settle_plan(
                    message, recipient, notification, at, now, has_device, preferences.get(recipient.pk), suppression
                )
            messages.append(message)
    return messages


def _settle_plan(
    message, recipient, notification, at: datetime, now: datetime, has_device: bool, preferences, suppression
):
    address = CHANNELS[message.channel].address(recipient, has_device)
    if address is None:
        message.status, message.reason = Message.Status.SUPPRESSED, "no_address"
        return
    message.to = address
    if suppression:
        # Before preferences, and for critical categories too: a bounce, a complaint or a STOP
        # is the provider's or the law's word, which no category overrides.
        message.status, message.reason = Message.Status.SUPPRESSED, suppression
        return
    decision = decide(recipient, notification.category, message.channel, at=at, entry=preferences)
    if decision.outcome == "blocked":
        message.status, message.reason = Message.Status.SUPPRESSED, decision.reason
    elif decision.outcome == "deferred":
        message.status, message.reason, message.next_attempt = Message.Status.SCHEDULED, decision.reason, decision.until
    elif at > now:
        message.status, message.next_attempt = Message.Status.SCHEDULED, at
    else:
        message.status, message.queued = Message.Status.QUEUED, now


def template_for(tenant: Tenant, code: str, locale: str | None, version: int | None = None):
    """The template version a recipient gets, or None when the template is gone (see
    `_template_for`). From the process's cache of the tenant's versions while no template of
    the tenant changed; the tenant's default locale is in the key, as the fallback uses it.
    The version may be shared with other requests of the process: read it, never change it."""
    key = (code, locale, version, tenant.default_locale)
    return versions_for_sends.get(tenant.pk, key, lambda: _template_for(tenant, code, locale, version))


def _template_for(tenant: Tenant, code: str, locale: str | None, version: int | None = None):
    """The template version a recipient gets, or None when the template is gone.

    The locale chain (`fr-CA` -> `fr` -> tenant default -> `en`) comes first. A template that
    exists only in other locales is still sent, in the locale it was first written in: some
    message beats none. A pinned version number the chosen locale lacks is looked up the same
    way (version numbers count per locale).
    """
    try:
        return resolve_version(tenant, code, locale, version)
    except ApiError:
        pass
    first = Template.objects.live().filter(tenant=tenant, code=code).order_by("created").first()
    if first is None:
        return None
    try:
        return resolve_version(tenant, code, first.locale, version)
    except ApiError:
        return None


def _template_version(notification: Notification, recipient: Recipient, cache: dict):
    """The template version pinned for this recipient's locale (DESIGN 3, step 4), cached per
    locale for a fan-out chunk. None means the template was deleted after the send was accepted:
    the message is then dead-lettered, not retried."""
    if not notification.template:
        return None
    locale = recipient.locale or notification.tenant.default_locale
    if locale not in cache:
        cache[locale] = template_for(notification.tenant, notification.template, locale, notification.template_version)
    return cache[locale]


def fan_out(notification_id) -> int:
    """Write every chunk of a bulk or topic send here and now; return how many messages were
    written. The task does one chunk per step instead (`fan_out_step`)."""
    written = 0
    while (chunk := fan_out_chunk(notification_id)) is not None:
        written += chunk.written
    return written


def fan_out_step(notification_id, after: int | None = None) -> int | None:
    """One step of a fan-out, what the task runs: write the next chunk from the committed
    checkpoint, commit it with the new checkpoint, then publish the next step. A step is short
    whatever the audience's size (a million recipients is 2,000 steps, each far below the task
    time limit), and a step killed half-way (`kill -9`) commits nothing: the next one, or the
    sweeper's resume, starts again from the checkpoint.

    `after` is the checkpoint the step was published from; a step that finds another one there
    is a twin (the sweeper resumed a fan-out whose step was only waiting) and stops, so one
    fan-out never runs as two chains. Returns the messages written, None when it stopped.
    """
    with transaction.atomic():
        chunk = fan_out_chunk(notification_id, after)
        if chunk is None:
            return None
        # Committed with the chunk: a step killed after its commit still has its successor.
        queue.fan_out(notification_id, after=chunk.cursor)
    return chunk.written


@dataclass(frozen=True)
class Chunk:
    written: int
    cursor: int


def fan_out_chunk(notification_id, after: int | None = None) -> Chunk | None:
    """Write the next chunk of messages and move the checkpoint past it, in one transaction;
    None when there is nothing left, it was cancelled, or the checkpoint is not `after`.

    Each chunk locks the notification row, so a redelivered twin of the task waits and then
    continues from the checkpoint the first one committed (nothing is written twice, and the
    unique constraint on (notification, recipient, channel) would refuse it), and a cancel waits
    for the chunk in progress, then stops the next one.
    """
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("tenant", "category", "campaign_run__campaign")
            .filter(pk=notification_id)
            .first()
        )
        if notification is None or notification.status != Notification.Status.FANNING_OUT:
            return None
        if after is not None and after != notification.fanned_out:
            logger.info(
                "Fan-out %s: a step from checkpoint %s found %s; stopping",
                notification_id,
                after,
                notification.fanned_out,
            )
            return None
        return write_chunk(notification, audience_for(notification))


def write_chunk(notification: Notification, audience: "Audience") -> Chunk | None:
    """Plan and write the audience's next chunk after the notification's checkpoint (locked by
    the caller, in its transaction), and move the checkpoint. The fan-out of any audience:
    bulk lists, topics and campaign runs (whose messages may each have their own send time,
    and are paced to the campaign's rate)."""
    recipients, cursor = audience.next_chunk(notification.fanned_out, FAN_OUT_CHUNK)
    now = timezone.now()
    if cursor == notification.fanned_out:  # nothing left
        # `progressed` then says when the last chunk was written (a campaign run's finished_at).
        notification.status, notification.progressed = Notification.Status.ACCEPTED, now
        notification.save(update_fields=["status", "progressed"])
        signals.fanned_out.send(Notification, notification_id=notification.pk, tenant_id=notification.tenant_id)
        return None
    campaign = notification.audience == Notification.Audience.CAMPAIGN
    messages = []
    if recipients:
        messages = plan(notification, recipients, campaigns.timing(notification, recipients, now) if campaign else None)
        if campaign:
            campaigns.pace(notification, messages, now)
    Message.objects.bulk_create(messages)
    stats.written(messages)
    analytics.written(messages)
    notification.fanned_out, notification.progressed = cursor, now
    notification.save(update_fields=["fanned_out", "progressed"])
    queue.enqueue_on_commit(messages)
    return Chunk(len(messages), cursor)


class Audience(Protocol):
    def next_chunk(self, after: int, size: int) -> tuple[list[Recipient], int]:
        """Up to `size` recipients after checkpoint `after`, and the checkpoint after them
        (equal to `after` when there is nobody left)."""


@dataclass(frozen=True)
class KeysetAudience:
    """The recipients of a queryset in primary-key order. The checkpoint is the last recipient
    id written (keyset pagination: each chunk is an index range scan, as fast at the millionth
    recipient as at the first, and recipients added or removed meanwhile shift nothing)."""

    recipients: QuerySet

    def next_chunk(self, after: int, size: int) -> tuple[list[Recipient], int]:
        chunk = list(self.recipients.filter(pk__gt=after).order_by("pk")[:size])
        return chunk, (chunk[-1].pk if chunk else after)


@dataclass(frozen=True)
class TargetListAudience:
    """A bulk send's `targets`, stored with the notification and never changed: the checkpoint
    is the position after the last target written, which stays a key into that list."""

    tenant: Tenant
    targets: list

    def next_chunk(self, after: int, size: int) -> tuple[list[Recipient], int]:
        chunk = self.targets[after : after + size]
        ids = [t for t in chunk if isinstance(t, str)]
        known = {r.external_id: r for r in Recipient.objects.filter(tenant=self.tenant, external_id__in=ids)}
        recipients = []
        for target in chunk:
            if isinstance(target, dict):
                fields = {k: v for k, v in target.items() if k != "id"}
                recipients.append(upsert_recipient(self.tenant, target["id"], fields)[0])
            elif target in known:  # erased since the request was accepted: nobody to send to
                recipients.append(known[target])
        return recipients, after + len(chunk)


def audience_for(notification: Notification) -> Audience:
    tenant = notification.tenant
    if notification.audience == Notification.Audience.BULK:
        return TargetListAudience(tenant, notification.targets)
    if notification.audience == Notification.Audience.CAMPAIGN:
        return KeysetAudience(campaigns.audience(notification.campaign_run.campaign))
    subscribers = Recipient.objects.filter(
        tenant=tenant, subscriptions__topic__tenant=tenant, subscriptions__topic__key=notification.topic
    )
    return KeysetAudience(subscribers)
