"""Campaigns: their beat schedules, their runs, and what a run adds to the shared fan-out.

Beat only triggers (`trigger`). A run is one Notification with the `campaign` audience, fanned
out page by page by the same task and the same planning as bulk and topic sends
(`services.write_chunk`): this module only says who the audience is (`audience`) and when
its messages may leave (`timing`, `pace`). The notification's row is the run's checkpoint.
"""

import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, Exists, F, OuterRef, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from alertflow.errors import ApiError
from alertflow.queues import CAMPAIGN_TASK, DEFAULT_QUEUE
from preferences.models import Recipient
from preferences.zones import stored_zone
from tenants import usage

from . import queue, signals
from .expiry import expires_in_for
from .models import Campaign, CampaignRun, Message, Notification
from .progress import message_counts

logger = logging.getLogger(__name__)

# `"timezone": "recipient"`: beat triggers the run at the cron time of the earliest timezone on
# Earth (UTC+14, Etc/GMT-14 in POSIX's inverted sign); each recipient's messages then wait in
# the message timers until that time comes in their own timezone.
RECIPIENT_TIMEZONE = "recipient"
EARLIEST_TIMEZONE = "Etc/GMT-14"

# Recipient fields an audience filter may name (`data.<key>` reaches into the recipient's data).
FILTER_FIELDS = {"external_id", "email", "phone", "name", "locale", "timezone"}


# --- Schedules ---------------------------------------------------------------------------------


def cron_fields(cron: str) -> dict:
    """The five cron fields as django-celery-beat's CrontabSchedule columns."""
    minute, hour, day_of_month, month_of_year, day_of_week = cron.split()
    return {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
    }


def beat_timezone(schedule: dict) -> str:
    return EARLIEST_TIMEZONE if schedule["timezone"] == RECIPIENT_TIMEZONE else schedule["timezone"]


def next_run(campaign: Campaign, after: datetime | None = None) -> datetime | None:
    """When beat triggers the campaign next (None when paused or a one-off already past).

    Computed in the schedule's timezone, so `0 9 * * *` in Europe/Paris is 09:00 there on both
    sides of a daylight-saving change.
    """
    after = after or timezone.now()
    if campaign.paused:
        return None
    schedule = campaign.schedule
    if "at" in schedule:
        at = datetime.fromisoformat(schedule["at"])
        started = campaign.runs.filter(slot=at).exists() if campaign.pk else False
        return at if at > after and not started else None
    zone = ZoneInfo(beat_timezone(schedule))
    return next(CronSim(schedule["cron"], after.astimezone(zone))).astimezone(UTC)


def latest_slot(schedule: dict, now: datetime) -> datetime:
    """The cron occurrence a trigger at `now` is for: the latest one at or before it."""
    zone = ZoneInfo(beat_timezone(schedule))
    # CronSim in reverse starts strictly before its start time.
    return next(CronSim(schedule["cron"], (now + timedelta(seconds=1)).astimezone(zone), reverse=True)).astimezone(UTC)


def check_cron(cron: str) -> None:
    """Raise ValueError unless both cronsim (next_run_at) and celery (beat) read `cron` alike."""
    from celery.schedules import crontab

    fields = cron.split()
    if len(fields) != 5:
        raise ValueError("Five fields: minute hour day-of-month month day-of-week.")
    try:
        CronSim(cron, datetime(2026, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(str(exc)) from None
    # Classic cron ORs day-of-month and day-of-week when both are set; celery ANDs them.
    if fields[2] != "*" and fields[4] != "*":
        raise ValueError("Restrict the day of the month or the day of the week, not both.")
    try:
        crontab(**cron_fields(cron))
    except Exception as exc:  # celery raises ValueError or its own ParseException
        raise ValueError(str(exc)) from None


def sync_schedule(campaign: Campaign) -> None:
    """Create or update the campaign's PeriodicTask (and its schedule row) to match it."""
    schedule = campaign.schedule
    task = campaign.periodic_task or PeriodicTask(name=f"campaign:{campaign.pk}", task=CAMPAIGN_TASK)
    old_clocked = task.clocked if task.clocked_id else None
    if "at" in schedule:
        at = datetime.fromisoformat(schedule["at"])
        if old_clocked is not None:
            old_clocked.clocked_time = at
            old_clocked.save(update_fields=["clocked_time"])
            clocked = old_clocked
        else:
            clocked = ClockedSchedule.objects.create(clocked_time=at)
        task.clocked, task.crontab, task.one_off = clocked, None, True
        # A one-off already run stays disabled (beat disables it after its tick).
        task.enabled = not campaign.paused and next_run(campaign) is not None
    else:
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            **cron_fields(schedule["cron"]), timezone=beat_timezone(schedule)
        )
        task.clocked, task.one_off = None, False
        task.enabled = not campaign.paused
    task.args = json.dumps([str(campaign.pk)])
    task.queue = DEFAULT_QUEUE
    task.description = f"Campaign {campaign.name!r} of tenant {campaign.tenant_id}"
    task.save()
    if old_clocked is not None and task.clocked_id != old_clocked.pk:
        old_clocked.delete()
    if campaign.periodic_task_id != task.pk:
        campaign.periodic_task = task
        campaign.save(update_fields=["periodic_task"])


def delete_campaign(campaign: Campaign) -> None:
    """Delete the campaign and its schedule; its runs with anything left to send (`cancellable`:
    fanning out, paused, or with messages still waiting) are cancelled first."""
    with transaction.atomic():
        for run in cancellable(campaign.runs.all()):
            # One cancelled since it was read (the API, the admin) has nothing left to stop.
            with contextlib.suppress(ApiError):
                cancel(run)
        task = campaign.periodic_task
        campaign.delete()
        if task is not None:
            clocked = task.clocked
            task.delete()
            if clocked is not None:
                clocked.delete()


# --- Runs --------------------------------------------------------------------------------------


def audience(campaign: Campaign):
    """The campaign's recipients, as a queryset (paged by id by the fan-out)."""
    spec = campaign.audience
    recipients = Recipient.objects.filter(tenant_id=campaign.tenant_id)
    if "topic" in spec:
        return recipients.filter(
            subscriptions__topic__tenant_id=campaign.tenant_id, subscriptions__topic__key=spec["topic"]
        )
    if "recipients" in spec:
        return recipients.filter(external_id__in=spec["recipients"])
    if "filter" in spec:
        lookups = {}
        for field, value in spec["filter"].items():
            lookup = "data__" + "__".join(field.split(".")[1:]) if field.startswith("data.") else field
            lookups[f"{lookup}__in" if isinstance(value, list) else lookup] = value
        return recipients.filter(**lookups)
    return recipients  # {"all": true}


def trigger(campaign_id, now: datetime | None = None) -> CampaignRun | None:
    """Beat's tick: start the run for the slot due now, unless it was already started."""
    now = now or timezone.now()
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.paused:
        return None
    if "at" in campaign.schedule:
        slot = datetime.fromisoformat(campaign.schedule["at"])
        if slot > now:
            return None  # an old tick for a one-off moved later since
    else:
        slot = latest_slot(campaign.schedule, now)
    try:
        return start_run(campaign, slot, now)
    except ApiError as exc:
        # Over the monthly quota: this slot's run starts nothing (no one to answer a 429 to).
        logger.warning("campaign %s: run at %s not started: %s", campaign.pk, slot.isoformat(), exc.error_code)
        return None


def run_now(campaign: Campaign) -> CampaignRun:
    now = timezone.now()
    run = start_run(campaign, now, now)
    if run is None:
        raise ApiError(409, "already_running", "A run of this campaign was started this very moment.")
    return run


def start_run(campaign: Campaign, slot: datetime, now: datetime) -> CampaignRun | None:
    """Write the run and its notification, and queue the fan-out; None if the slot has one.
    Charged against the monthly quotas as a bulk send is, one per recipient per channel:
    raises ApiError 429 `quota_exceeded` (nothing written) when the run would go over."""
    try:
        with transaction.atomic():
            size = audience(campaign).count()
            usage.charge(campaign.tenant, dict.fromkeys(campaign.channels, size))
            notification = Notification.objects.create(
                tenant_id=campaign.tenant_id,
                category=campaign.category,
                audience=Notification.Audience.CAMPAIGN,
                status=Notification.Status.FANNING_OUT,
                priority=campaign.priority,
                channels=campaign.channels,
                template=campaign.template,
                template_version=campaign.template_version,
                data=campaign.data,
                metadata={"campaign": str(campaign.pk)},
                expires_in=expires_in_for(campaign.category, campaign.priority),
                created=now,
                progressed=now,
            )
            run = CampaignRun.objects.create(
                tenant_id=campaign.tenant_id,
                campaign=campaign,
                notification=notification,
                slot=slot,
                audience_size=size,
                started=now,
            )
            queue.fan_out(notification.id)
    except IntegrityError:
        return None  # another tick (or another beat) started this slot's run
    return run


def timing(notification: Notification, recipients: list[Recipient], now: datetime) -> dict | None:
    """Per-recipient send times for `"timezone": "recipient"`: the run's cron occurrence in each
    recipient's own timezone (None for other schedules: everyone now)."""
    run = notification.campaign_run
    schedule = run.campaign.schedule
    if schedule.get("timezone") != RECIPIENT_TIMEZONE:
        return None
    start = max(run.slot, now) - timedelta(seconds=1)
    times = {}
    for recipient in recipients:
        zone = stored_zone(recipient.timezone)
        times[recipient.pk] = next(CronSim(schedule["cron"], start.astimezone(zone))).astimezone(UTC)
    return times


def pace(notification: Notification, messages: list[Message], now: datetime) -> None:
    """Hold messages back so the run sends at most `rate` a minute, counted from its start,
    and count them on the run (committed with the page)."""
    run = notification.campaign_run
    sendable = [m for m in messages if m.status in (Message.Status.QUEUED, Message.Status.SCHEDULED)]
    rate = run.campaign.rate
    if rate:
        for index, message in enumerate(sendable, start=run.planned):
            slot = run.started + timedelta(minutes=index // rate)
            if slot > now and (message.next_attempt is None or message.next_attempt < slot):
                message.status, message.next_attempt, message.queued = Message.Status.SCHEDULED, slot, None
                # Its wait for the pace is not a delay in delivery: expiry counts from its slot.
                message.expires_at = notification.message_expiry(slot)
    CampaignRun.objects.filter(pk=run.pk).update(planned=run.planned + len(sendable))


def _locked(run: CampaignRun, statuses: tuple, code: str, verb: str) -> Notification:
    """The run's notification, locked (a fan-out page in progress finishes first), in one of
    `statuses`."""
    notification = Notification.objects.select_for_update().get(pk=run.notification_id)
    if notification.status not in statuses:
        *others, last = [run.STATE_OF[status] for status in statuses]
        wanted = f"{', '.join(others)} or {last}" if others else last
        state = run.STATE_OF[notification.status]
        raise ApiError(409, code, f"Only a {wanted} run can be {verb}; this one is {state}.")
    return notification


def _refuse_when_nothing_left(notification: Notification, moved: int, verb: str) -> None:
    """409 for a run whose fan-out is done (its notification, locked, is `accepted`) when its
    pause or cancel found nothing to stop (`lifecycle.nothing_left_to_stop`: none of its
    messages moved, none in a worker's hands); raised inside the pause's or cancel's
    transaction, it undoes what they wrote."""
    from .lifecycle import nothing_left_to_stop

    if notification.status == Notification.Status.ACCEPTED and nothing_left_to_stop(notification.pk, moved):
        raise ApiError(
            409,
            "not_running",
            f"This run is completed and none of its messages waits to be sent or is in a worker's hands: "
            f"nothing to {verb}.",
        )


@transaction.atomic
def pause(run: CampaignRun) -> CampaignRun:
    """Stop whatever of the run is not sent yet: its fan-out after the page in progress, and
    every message of the run that waits to be sent (scheduled, queued, retrying), taken aside as
    `paused`, times untouched: nothing sends, queues or expires a paused message (a task already
    in the broker claims nothing, the due poller and the sweeper never read it), and a cancel,
    an opt-out or an operator still may.

    A run whose fan-out is done (`accepted`) is paused while some of its messages still wait or
    are in a worker's hands (a rate-paced run sends for hours after its last page); with none
    left it answers 409."""
    notification = _locked(
        run, (Notification.Status.FANNING_OUT, Notification.Status.ACCEPTED), "not_running", "paused"
    )
    after_fan_out = notification.status == Notification.Status.ACCEPTED
    now = timezone.now()
    held = Message.objects.filter(notification=notification).move(Message.Status.PAUSED, updated=now)
    _refuse_when_nothing_left(notification, held, "pause")
    notification.status = Notification.Status.PAUSED
    notification.save(update_fields=["status"])
    CampaignRun.objects.filter(pk=run.pk).update(paused_at=now, paused_after_fan_out=after_fan_out)
    return CampaignRun.objects.select_related("notification").get(pk=run.pk)


def _completed_with_something_left() -> Q:
    """A run lookup: its fan-out is done and some of its messages still wait to be sent (those a
    pause takes aside, and a cancel cancels) or are in a worker's hands, as
    `_refuse_when_nothing_left` lets through."""
    left = Message.objects.filter(
        notification_id=OuterRef("notification_id"),
        status__in=[*Message.ENTERED_FROM[Message.Status.PAUSED], Message.Status.SENDING],
    )
    return Q(Exists(left), notification__status=Notification.Status.ACCEPTED)


def pausable(runs):
    """Of `runs`, those `pause` would stop: fanning out, or done fanning out with messages still
    waiting to be sent or in a worker's hands."""
    return runs.filter(Q(notification__status=Notification.Status.FANNING_OUT) | _completed_with_something_left())


def cancellable(runs):
    """Of `runs`, those `cancel` would stop: fanning out, paused, or done fanning out with
    messages still waiting to be sent or in a worker's hands."""
    running = (Notification.Status.FANNING_OUT, Notification.Status.PAUSED)
    return runs.filter(Q(notification__status__in=running) | _completed_with_something_left())


@transaction.atomic
def resume(run: CampaignRun) -> CampaignRun:
    """Continue from where the pause stopped: the paused messages wait again, later by the
    pause's length (one that was already due, or queued, is due now): `retrying` if an attempt
    was made, else `scheduled`, for the due poller to queue in their time. A run paused while
    fanning out continues from its checkpoint; one paused after its fan-out is `completed`
    again, its `finished_at` as it was."""
    notification = _locked(run, (Notification.Status.PAUSED,), "not_paused", "resumed")
    run = CampaignRun.objects.get(pk=run.pk)
    now = timezone.now()
    paused_at = run.paused_at or now
    paused_for = now - paused_at
    paused = Message.objects.filter(notification=notification, status=Message.Status.PAUSED)
    # A queued message has no time of its own: it was due at the pause.
    was_due = Value(paused_at, output_field=DateTimeField())
    for status, held in (
        (Message.Status.SCHEDULED, paused.filter(attempts=0)),
        (Message.Status.RETRYING, paused.filter(attempts__gt=0)),
    ):
        held.move(
            status,
            next_attempt=Coalesce(F("next_attempt"), was_due) + paused_for,
            expires_at=F("expires_at") + paused_for,
            updated=now,
        )
    if run.paused_after_fan_out:
        # `accepted` again, `progressed` (its finished_at) untouched, and no fan-out step: one
        # would write whoever joined the audience since the last page.
        notification.status = Notification.Status.ACCEPTED
        notification.save(update_fields=["status"])
        CampaignRun.objects.filter(pk=run.pk).update(paused_at=None, paused_after_fan_out=False)
        # As at the end of a fan-out, it may be complete already: the paused messages may all
        # have been withdrawn meanwhile (an unsubscribe, an operator's cancel).
        signals.fanned_out.send(Notification, notification_id=notification.pk, tenant_id=notification.tenant_id)
    else:
        notification.status, notification.progressed = Notification.Status.FANNING_OUT, now
        notification.save(update_fields=["status", "progressed"])
        # The pace counts from the run's start: move it by the pause too.
        CampaignRun.objects.filter(pk=run.pk).update(paused_at=None, started=run.started + paused_for)
        # From the checkpoint: a step published before the pause and still waiting in the queue
        # meets this one there, and only the first continues (services.fan_out_step).
        queue.fan_out(notification.id, after=notification.fanned_out)
    return CampaignRun.objects.select_related("notification").get(pk=run.pk)


@transaction.atomic
def cancel(run: CampaignRun) -> CampaignRun:
    """Stop whatever of the run is not sent yet, as a notification cancel does: its fan-out, and
    every message of the run not sent yet (scheduled, queued, retrying, paused), cancelled; the
    run is `cancelled`. A cancelled message is never queued, claimed or swept again.

    A run whose fan-out is done (`accepted`) is cancelled while some of its messages still wait
    or are in a worker's hands (a rate-paced run sends for hours after its last page); with none
    left it answers 409."""
    from .lifecycle import cancel_unsent

    notification = _locked(
        run,
        (Notification.Status.FANNING_OUT, Notification.Status.PAUSED, Notification.Status.ACCEPTED),
        "not_running",
        "cancelled",
    )
    cancelled, _fanned_out = cancel_unsent(notification)
    # `notification` is as locked above, before the cancel: `accepted` for a completed run.
    _refuse_when_nothing_left(notification, cancelled, "cancel")
    return CampaignRun.objects.select_related("notification").get(pk=run.pk)


# Message statuses as the run's progress counters. `queued` counts every message written to be
# sent (scheduled and paused ones included); each later counter counts the messages that got that far.
PROGRESS = {
    "queued": set(Message.Status) - {Message.Status.SUPPRESSED},
    "sent": {
        Message.Status.SENT,
        Message.Status.DELIVERED,
        Message.Status.READ,
        Message.Status.BOUNCED,
        Message.Status.COMPLAINED,
    },
    "delivered": {Message.Status.DELIVERED, Message.Status.READ, Message.Status.COMPLAINED},
    "failed": {Message.Status.FAILED, Message.Status.BOUNCED, Message.Status.EXPIRED},
    "suppressed": {Message.Status.SUPPRESSED},
}


def progress(run: CampaignRun, counts: dict | None = None) -> dict:
    """The run's live counters from its messages' counts by status (`progress.message_counts`,
    read here when not given: one grouped count)."""
    if counts is None:
        counts = message_counts([run.notification_id]).get(run.notification_id, {})
    return {name: sum(counts.get(s, 0) for s in statuses) for name, statuses in PROGRESS.items()}
