"""A notification is one request to notify; a message is one recipient on one channel.

PostgreSQL is the source of truth for every message (DESIGN section 3): the broker only carries
message ids, and every timer (send_at, quiet hours, retry backoff) is `Message.next_attempt`.
"""

import logging
import uuid
import weakref
from datetime import datetime, timedelta

from django.core.exceptions import EmptyResultSet
from django.db import connections, models, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from alertflow.choices import Channel, Priority
from alertflow.logging import current_request_id

from . import transitions

logger = logging.getLogger(__name__)


class Notification(models.Model):
    class Audience(models.TextChoices):
        SINGLE = "single"
        BULK = "bulk"
        TOPIC = "topic"
        CAMPAIGN = "campaign"

    class Status(models.TextChoices):
        # Messages are being written by the fan-out task (bulk and topic sends).
        FANNING_OUT = "fanning_out"
        # A campaign run the tenant or an operator paused: its fan-out, if not done, stops, and
        # its messages waiting to be sent are `paused` (notifications/campaigns.py).
        PAUSED = "paused"
        # Every message is written; each message carries its own delivery status.
        ACCEPTED = "accepted"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: notification_history starts with tenant.
    tenant = models.ForeignKey("tenants.Tenant", models.CASCADE, related_name="notifications", db_index=False)
    category = models.ForeignKey("tenants.Category", models.SET_NULL, null=True, blank=True, related_name="+")
    audience = models.CharField(max_length=10, choices=Audience.choices, default=Audience.SINGLE)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACCEPTED)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    channels = models.JSONField(default=list)
    template = models.CharField(max_length=100, blank=True, help_text="Template code, or blank for inline content.")
    template_version = models.PositiveIntegerField(null=True, blank=True, help_text="Pinned version number, if asked.")
    content = models.JSONField(null=True, blank=True, help_text="Inline per-channel content.")
    data = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    send_at = models.DateTimeField(null=True, blank=True)
    # Seconds a message may wait to be sent, counted from `send_at` (or acceptance): from the
    # request, else its category, else the deployment's default for its priority.
    expires_in = models.PositiveIntegerField(null=True, blank=True)
    # Bulk, topic and campaign sends: who to fan out to, and how far the fan-out got (it
    # resumes there: an index into `targets`, or the last recipient id written).
    targets = models.JSONField(null=True, blank=True)
    topic = models.CharField(max_length=64, blank=True)
    fanned_out = models.PositiveIntegerField(default=0)
    # Moved by every fan-out chunk: the sweeper resumes a fan-out only when this stands still.
    progressed = models.DateTimeField(default=timezone.now)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    # The id of the request that made it (X-Request-ID, alertflow/logging.py): what publishes its
    # messages later (the due poller for send_at and retries, the sweeper) publishes them under
    # it, so their delivery lines carry it.
    request_id = models.CharField(max_length=200, blank=True, default=current_request_id)
    response = models.JSONField(null=True, blank=True, help_text="The 202 body, replayed for a repeated key.")
    created = models.DateTimeField(default=timezone.now)
    cancelled = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            # A database constraint, not a read-then-write: two concurrent requests with one
            # key cannot both insert (DESIGN section 6, idempotency).
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="notification_unique_idem_key",
            )
        ]
        indexes = [
            # GET /api/v1/notifications: a tenant's history, newest first, cursor-paginated.
            models.Index(fields=["tenant", "-created", "-id"], name="notification_history"),
            # The fan-out sweeper: bulk and topic sends whose task was lost (no progress lately).
            models.Index(fields=["progressed"], condition=Q(status="fanning_out"), name="notification_fanning_out"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    def message_expiry(self, send_time: datetime | None = None) -> datetime | None:
        """When its messages expire: `expires_in` after their send time (`send_time` when a
        message has its own, as in a campaign), else after its send time or acceptance."""
        if self.expires_in is None:
            return None
        start = send_time or max(self.send_at or self.created, self.created)
        return start + timedelta(seconds=self.expires_in)


def log_unmatched(status: str, expected: int, moved: int) -> None:
    """Count, in the log, status writes that matched nothing because the row had moved on."""
    if moved < expected:
        logger.info(
            "status_write_unmatched: %d of %d message(s) not moved to %s: their status no longer allows it",
            expected - moved,
            expected,
            status,
        )


class MessageQuerySet(models.QuerySet):
    def move(self, status: str, *, expected: int | None = None, **fields) -> int:
        """Move these messages to `status`, each only from a status `status` may follow
        (`Message.ENTERED_FROM`), setting `fields` too; return how many moved.

        The others change nothing. With `expected` (how many the caller meant to move), the
        shortfall is counted in the log. The listeners of `notifications.transitions` are told
        which rows moved, inside the same transaction (their writes commit with the move).
        """
        movable = self.filter(status__in=Message.ENTERED_FROM[status])
        if not transitions.listening():
            moved = movable.update(status=status, **fields)
        else:
            with transaction.atomic(using=movable.db, savepoint=False):
                rows = movable.update_returning(status=status, **fields)
                transitions.moved(status, rows)
            moved = len(rows)
        if expected is not None:
            log_unmatched(status, expected, moved)
        return moved

    def update_returning(self, **values) -> list[transitions.Moved]:
        """`update(**values)` in one `UPDATE ... RETURNING` statement (PostgreSQL, SQLite 3.35+):
        the updated rows as `transitions.Moved`, without a second query to read them back."""
        query = self.query.chain(UpdateQuery)
        query.add_update_values(values)
        # As QuerySet.update does: annotations would only end up in a pk__in subquery.
        query.annotations = {}
        compiler = query.get_compiler(self.db)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            # A WHERE that cannot match (`pk__in=[]`, `none()`): `update()` answers 0 for it
            # (SQLCompiler.execute_sql catches this), so must this.
            return []
        if not sql:
            return []
        sql += " RETURNING " + returning_columns(compiler.connection)
        with compiler.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return moved_from(cursor.fetchall(), compiler.connection)


def returning_columns(connection) -> str:
    """The `RETURNING` list of `transitions.COLUMNS` for a status write on the message table.
    Unqualified: SQLite's RETURNING takes no table name, and these writes have no join."""
    quote = connection.ops.quote_name
    return ", ".join(quote(Message._meta.get_field(name).column) for name in transitions.COLUMNS)


# Each connection's converters for the RETURNING columns, worked out at its first status write:
# building them with Django's compiler on every call was two fifths of the claim's CPU for a
# single send (bench.deliverloop, py-spy), where PostgreSQL needs none.
_converters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def moved_from(rows: list, connection) -> list[transitions.Moved]:
    """Raw rows of a `RETURNING {returning_columns()}` as `transitions.Moved`, each value converted
    as the ORM converts it on read (SQLite returns UUIDs and datetimes as text). The one
    conversion for both status writes that use RETURNING: `update_returning` and the claim
    (delivery/state.py)."""
    if not rows:
        return []
    wrapper = connections[connection.alias]  # the thread's own, not the `django.db.connection` proxy
    found = _converters.get(wrapper)
    if found is None:
        table = Message._meta.db_table
        columns = [Message._meta.get_field(name).get_col(table) for name in transitions.COLUMNS]
        compiler = Message.objects.none().query.get_compiler(connection=wrapper)
        found = _converters[wrapper] = (compiler, compiler.get_converters(columns))
    compiler, converters = found
    if converters:
        rows = compiler.apply_converters(rows, converters)
    return [transitions.Moved(*row) for row in rows]


class Message(models.Model):
    """One recipient on one channel: the unit that is queued, claimed, sent and retried."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        DELIVERED = "delivered"
        READ = "read"
        RETRYING = "retrying"
        FAILED = "failed"
        SUPPRESSED = "suppressed"
        CANCELLED = "cancelled"
        BOUNCED = "bounced"
        COMPLAINED = "complained"
        # Not sent before `expires_at`: final, listed and replayable with the dead letters.
        EXPIRED = "expired"
        # Held by its campaign run's pause (notifications/campaigns.py): not due, not claimable,
        # not expiring, its `next_attempt` and `expires_at` its real ones until the resume
        # moves them on by the pause's length.
        PAUSED = "paused"

    # Statuses only move forward (DESIGN section 3). Each status names the statuses it may be
    # entered from, and every status write puts them in its WHERE clause (`objects.move`, or the
    # claim and the batch record in delivery/state.py), so a late or repeated write changes
    # nothing: a batch recording `sent` after a receipt said `delivered`, a cancel racing a
    # claim, a worker whose lease ran out. Replay (`failed -> queued`) is the one way back, and
    # only when asked for. A run's pause and resume take waiting messages aside and back
    # (`scheduled`, `queued`, `retrying` -> `paused` -> `scheduled` or `retrying`): nothing on
    # either side has left or is in a worker's hands, and both happen under the run's lock.
    ENTERED_FROM = {
        # Inserted by planning; from `paused` when its run resumes.
        Status.SCHEDULED: (Status.PAUSED,),
        Status.QUEUED: (Status.SCHEDULED, Status.RETRYING, Status.FAILED, Status.EXPIRED),
        Status.SENDING: (Status.QUEUED,),
        Status.SENT: (Status.SENDING,),
        Status.RETRYING: (Status.SENDING, Status.PAUSED),
        # From `sent` too: a provider's receipt may say it could not deliver (Twilio `undelivered`).
        Status.FAILED: (Status.SENDING, Status.SENT),
        Status.CANCELLED: (Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.PAUSED),
        # From every status that still waits to be sent, and from a settle that would retry too late
        # (not `paused`: a paused message's wait does not count, its expiry moves on at the resume).
        Status.EXPIRED: (Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.SENDING),
        # Receipts: a provider's may arrive before the batch has recorded `sent`.
        Status.DELIVERED: (Status.SENDING, Status.SENT),
        Status.BOUNCED: (Status.SENDING, Status.SENT, Status.DELIVERED),
        Status.COMPLAINED: (Status.SENT, Status.DELIVERED, Status.READ),
        Status.READ: (Status.SENT, Status.DELIVERED),
        # Inserted by planning; from `sending` when the worker finds the address suppressed since.
        Status.SUPPRESSED: (Status.SENDING,),
        Status.PAUSED: (Status.SCHEDULED, Status.QUEUED, Status.RETRYING),
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of their own: message_by_status starts with tenant, message_once_per_recipient
    # with notification, message_by_recipient with recipient. Each whole (not partial) index of
    # this table is written at accept and again at each status change, none of them a HOT update.
    tenant = models.ForeignKey("tenants.Tenant", models.CASCADE, related_name="+", db_index=False)
    notification = models.ForeignKey(Notification, models.CASCADE, related_name="messages", db_index=False)
    recipient = models.ForeignKey("preferences.Recipient", models.CASCADE, related_name="messages", db_index=False)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    # Sent in a batch task (bulk, topic) rather than one task per message.
    batched = models.BooleanField(default=False)
    # Why a message was suppressed, deferred or failed, as a code (`channel_opted_out`).
    reason = models.CharField(max_length=64, blank=True)
    next_attempt = models.DateTimeField(null=True, blank=True)
    # While `sending`: the claiming worker's lease. It renews it while its batch runs; past it, the
    # worker is taken for dead and the message is retried. Its value is also the claim's token:
    # a worker whose lease ran out writes nothing over the next claim's work.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Not sent by then, the message is useless (an OTP): it becomes `expired` instead.
    expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    template_version = models.ForeignKey(
        "templates_app.TemplateVersion", models.PROTECT, null=True, blank=True, related_name="+"
    )
    # What was sent, as rendered: the inbox reads it, and history shows it.
    rendered = models.JSONField(null=True, blank=True)
    to = models.CharField(max_length=320, blank=True, help_text="The address used: email, phone or devices.")
    provider = models.CharField(max_length=100, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)
    queued = models.DateTimeField(null=True, blank=True)
    sent = models.DateTimeField(null=True, blank=True)
    delivered = models.DateTimeField(null=True, blank=True)
    read = models.DateTimeField(null=True, blank=True)
    failed = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created", "id"]
        constraints = [
            # One message per recipient and channel of a notification: a fan-out step that ran
            # twice could not write a recipient twice even past its checkpoint.
            models.UniqueConstraint(fields=["notification", "recipient", "channel"], name="message_once_per_recipient")
        ]
        indexes = [
            # The due-message poller: scheduled sends, quiet-hours deferrals and retries whose
            # time has come (`status IN (...) AND next_attempt <= now()`).
            models.Index(
                fields=["next_attempt"],
                condition=Q(status__in=["scheduled", "retrying"]),
                name="message_due",
            ),
            # The sweeper: queued messages whose publish failed (`next_attempt` set on a queued
            # message, notifications/queue.py), published again at its next run.
            models.Index(
                fields=["next_attempt"],
                condition=Q(status="queued", next_attempt__isnull=False),
                name="message_unpublished",
            ),
            # The stale sweeper: messages queued or sending for too long (`updated < cutoff`).
            models.Index(fields=["updated"], condition=Q(status__in=["queued", "sending"]), name="message_in_flight"),
            # The due-message poller's lease pass: claims whose worker stopped renewing them.
            models.Index(fields=["lease_until"], condition=Q(status="sending"), name="message_lease"),
            # The due-message poller's expiry pass: waiting messages whose `expires_at` has passed.
            models.Index(
                fields=["expires_at"],
                condition=Q(status__in=["scheduled", "queued", "retrying"]),
                name="message_expiry",
            ),
            # Dead letters and message lists: `tenant = ? AND status = ? ORDER BY created DESC`.
            models.Index(fields=["tenant", "status", "-created"], name="message_by_status"),
            # Notification history filtered by recipient.
            models.Index(fields=["recipient", "-created"], name="message_by_recipient"),
            # Provider receipts (delivery/receipts.py): `provider_message_id = ?` of one tenant.
            models.Index(fields=["provider_message_id"], name="message_by_provider_id"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One try of one provider for one message: the delivery log."""

    class Outcome(models.TextChoices):
        SENT = "sent"
        TRANSIENT = "transient"
        PERMANENT = "permanent"

    message = models.ForeignKey(Message, models.CASCADE, related_name="delivery_attempts")
    provider = models.CharField(max_length=100)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    started = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    provider_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["started", "id"]

    def __str__(self) -> str:
        return f"{self.provider}: {self.outcome}"


class Campaign(models.Model):
    """A scheduled send to a topic, a segment or every recipient (DESIGN section 6).

    Its schedule is a django-celery-beat `PeriodicTask` (`periodic_task`), kept in step by
    `notifications.campaigns`: beat only triggers, and each trigger makes one `CampaignRun`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    template = models.CharField(max_length=100)
    template_version = models.PositiveIntegerField(null=True, blank=True, help_text="Pinned version number, if asked.")
    category = models.ForeignKey("tenants.Category", models.SET_NULL, null=True, blank=True, related_name="+")
    channels = models.JSONField(default=list)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.LOW)
    data = models.JSONField(default=dict, blank=True)
    # {"topic": key} | {"all": true} | {"recipients": [external ids]} | {"filter": {field: value}}
    audience = models.JSONField()
    # {"cron": "0 9 * * MON", "timezone": "Europe/Paris" | "recipient"} | {"at": ISO date-time}
    schedule = models.JSONField()
    rate = models.PositiveIntegerField(null=True, blank=True, help_text="At most this many messages a minute.")
    paused = models.BooleanField(default=False)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.name


class CampaignRun(models.Model):
    """One trigger of a campaign: one Notification, fanned out by the same task as bulk sends.

    The notification carries the run's state and checkpoint (`status`, `fanned_out`); the run
    names the slot it was started for, and (campaign, slot) is unique so two beat ticks, or two
    beat processes, never start the same run twice.
    """

    class State(models.TextChoices):
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    STATE_OF = {
        Notification.Status.FANNING_OUT: State.RUNNING,
        Notification.Status.PAUSED: State.PAUSED,
        Notification.Status.ACCEPTED: State.COMPLETED,
        Notification.Status.CANCELLED: State.CANCELLED,
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", models.CASCADE, related_name="+")
    # No index of its own: campaign_run_unique_slot starts with campaign.
    campaign = models.ForeignKey(Campaign, models.CASCADE, related_name="runs", db_index=False)
    notification = models.OneToOneField(Notification, models.CASCADE, related_name="campaign_run")
    # The scheduled time this run is for (the cron occurrence, the one-off time, or "now").
    slot = models.DateTimeField()
    audience_size = models.PositiveIntegerField(default=0)
    # Messages written so far, so the rate cap paces the next page after the last one.
    planned = models.PositiveIntegerField(default=0)
    paused_at = models.DateTimeField(null=True, blank=True)
    # The pause came after the fan-out had written its last page (a rate-paced run sends for
    # hours after that): the resume makes the notification `accepted` again, with no fan-out step.
    paused_after_fan_out = models.BooleanField(default=False)
    started = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-started", "-id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "slot"], name="campaign_run_unique_slot")]

    def __str__(self) -> str:
        return f"{self.campaign} at {self.slot:%Y-%m-%d %H:%M}"

    @property
    def state(self) -> str:
        return self.STATE_OF[self.notification.status]

    @property
    def finished(self):
        if self.notification.status == Notification.Status.CANCELLED:
            return self.notification.cancelled
        # `progressed` is when the last page was written: a pause after it leaves it as it was.
        if self.notification.status == Notification.Status.ACCEPTED or self.paused_after_fan_out:
            return self.notification.progressed
        return None


SHARD_HELP = (
    "Writers raise the rows of their database connection's shard, so they rarely wait for each other; "
    "the reports add the shards up (alertflow/counters.py)."
)


class DeliveryCount(models.Model):
    """How many messages entered a status in one hour, per tenant, channel, category and
    provider: the aggregates GET /api/v1/analytics/deliveries and the admin dashboard read
    (notifications/analytics.py), never the message table.

    `status` is a message status, or `accepted` for every message written at accept or fan-out.
    Rows are only ever incremented, with `INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`
    inside the transaction of the status write itself, so concurrent workers add up and a
    rolled-back write counts nothing.
    """

    # No index of its own: delivery_count_key_shard starts with tenant.
    tenant = models.ForeignKey("tenants.Tenant", models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField(help_text="The start of the hour (UTC) the messages entered the status in.")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # The category's key then, and the provider's name: "" for none (a unique key must not be NULL).
    category = models.CharField(max_length=64, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=12)
    shard = models.PositiveSmallIntegerField(default=0, help_text=SHARD_HELP)
    n = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert's conflict target. Tenant and hour first: every report reads
            # `tenant = ? AND hour BETWEEN ? AND ?` through this index.
            models.UniqueConstraint(
                fields=["tenant", "hour", "channel", "category", "provider", "status", "shard"],
                name="delivery_count_key_shard",
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.channel} {self.status}: {self.n}"


class DeliveryLatency(models.Model):
    """A latency histogram per hour, tenant, channel, category and provider: how many messages
    took from acceptance to `stage` (`sent`: the provider took it; `delivered`: its receipt
    said so) a time in `bucket` (notifications/analytics.py, log-spaced buckets).

    Fixed buckets rather than stored latencies or percentiles: counts per bucket add up across
    rows (hours, channels, providers) and across concurrent writers with the same atomic
    increment as `DeliveryCount`, and any percentile of any grouping is read from the sums,
    within a bucket's width.
    """

    # No index of its own: delivery_latency_key_shard starts with tenant.
    tenant = models.ForeignKey("tenants.Tenant", models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    channel = models.CharField(max_length=10, choices=Channel.choices)
    category = models.CharField(max_length=64, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    stage = models.CharField(max_length=10)
    bucket = models.PositiveSmallIntegerField()
    shard = models.PositiveSmallIntegerField(default=0, help_text=SHARD_HELP)
    n = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "delivery latencies"
        constraints = [
            # The upsert's conflict target, and the reports' index (tenant and hour first).
            models.UniqueConstraint(
                fields=["tenant", "hour", "channel", "category", "provider", "stage", "bucket", "shard"],
                name="delivery_latency_key_shard",
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.channel} {self.stage} bucket {self.bucket}: {self.n}"


class Outbox(models.Model):
    """Tasks to publish, written in the transaction that queued their messages (DESIGN section 3).

    The request (or fan-out step, poller, sweeper) only commits rows; the relay
    (notifications/outbox.py, `manage.py relay`) publishes committed rows and deletes them in
    one transaction, so a task is published if and only if its messages were committed, and a
    publish lost to a crash or a broker outage is retried from here, never guessed at.

    One row per transaction and task group, not per message: a row holds every id of one
    (task, queue, priority step) a transaction queued, so a 5,000-message fan-out adds a few
    rows, not 5,000. Sends of one group from several rows are merged by the relay.
    """

    task = models.CharField(max_length=64)
    queue = models.CharField(max_length=32)
    # The priority step (alertflow/queues.py): which of the queue's Redis lists.
    step = models.PositiveSmallIntegerField()
    # A send's message ids, or a fan-out step's [notification id, checkpoint].
    args = models.JSONField()
    # Unix time the earliest of the messages was queued (notifications/queue.py, QUEUED_HEADER).
    queued_at = models.FloatField()
    request_id = models.CharField(max_length=200, blank=True)
    # The database's clock, not the writer's: the relay measures how long a row waited with it
    # alone (queue._held_within_cap), whichever host wrote the row.
    created = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return f"{self.task} -> {self.queue}:{self.step}"
