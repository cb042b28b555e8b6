"""Message state in the database: claim, settle, record (DESIGN section 3, steps 3 and 6).

Everything here is about what a message's row says, never about providers: `claim` takes
messages for a worker, `settle` decides a message's next status from an `Outcome` (in memory),
`record` writes settled messages and their attempts in bulk.
"""

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from alertflow.compiled import CompiledInsert
from notifications import transitions
from notifications.models import DeliveryAttempt, Message, log_unmatched, moved_from, returning_columns

from .channels import BUILTIN

# The record's attempt rows, the INSERT built once per number of rows and connection: Django's
# compiler built it on every record, a fifth of a single send's record (bench.deliverloop, py-spy).
# One statement of all the rows, not an executemany: for a single send's one row, psycopg's
# pipeline mode that executemany enters cost ~0.1 ms more than the statement (bench/README).
insert_attempts = CompiledInsert(DeliveryAttempt)

logger = logging.getLogger(__name__)

# Why a message expired, by where it was waiting.
EXPIRED_WHILE_SCHEDULED = "expired_while_scheduled"
EXPIRED_IN_QUEUE = "expired_in_queue"
EXPIRED_WHILE_RETRYING = "expired_while_retrying"


class Lease:
    """A batch's hold on the messages it claimed.

    `until` is stamped on every claimed row (`Message.lease_until`) and renewed while the batch
    runs; past it the due poller takes the worker for dead and retries the messages. It is also
    the batch's token: every later write of the batch (renewal, record, release) names it, so
    a worker whose lease ran out writes nothing over the next claim of the same message.
    """

    # Renew when less than this much of the lease is left (or less than the call about to start).
    RENEW_BELOW = 0.5

    def __init__(self, ids: list, until: datetime | None) -> None:
        self.ids = ids
        self.until = until

    def __bool__(self) -> bool:
        return bool(self.ids)

    def cover(self, seconds: float = 0) -> None:
        """Make sure the lease outlasts the next `seconds` (a provider call's timeout), renewing
        it when less than that, or less than half a lease, is left."""
        now = timezone.now()
        lease = settings.ALERTFLOW_LEASE_SECONDS
        needed = max(seconds + 1, lease * self.RENEW_BELOW)
        if not self.ids or self.until - now >= timedelta(seconds=needed):
            return
        until = now + timedelta(seconds=max(lease, seconds + 1))
        # The messages of this batch still `sending` under this lease: the recorded ones left it.
        Message.objects.filter(pk__in=self.ids, status=Message.Status.SENDING, lease_until=self.until).update(
            lease_until=until
        )
        self.until = until


def claim(message_ids: list) -> Lease:
    """Move queued messages to `sending` in one statement, under one lease; return the lease
    with the ids this call won.

    A redelivered or duplicated task finds them no longer `queued` and claims nothing: this is
    what makes an at-least-once queue send once (DESIGN section 3, step 3). A message past its
    `expires_at` is not claimed but `expired` by the same statement: it is never sent late.
    """
    if not message_ids:
        return Lease([], None)
    id_field = Message._meta.pk
    ids = [id_field.get_db_prep_value(id_field.to_python(i), connection) for i in message_ids]
    table = Message._meta.db_table
    placeholders = ", ".join(["%s"] * len(ids))
    may_leave = Message.ENTERED_FROM[Message.Status.SENDING]
    now = timezone.now()
    until = now + timedelta(seconds=settings.ALERTFLOW_LEASE_SECONDS)
    # Prepared by the field, as the ORM would: SQLite compares the stored text.
    moment = Message._meta.get_field("expires_at").get_db_prep_value(now, connection)
    lease = Message._meta.get_field("lease_until").get_db_prep_value(until, connection)
    past_expiry = "expires_at IS NOT NULL AND expires_at <= %s"
    returning = returning_columns(connection)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        # Both PostgreSQL and SQLite (3.35+) support UPDATE ... RETURNING.
        cursor.execute(
            f"UPDATE {table} SET "  # noqa: S608 (no user input)
            f"status = CASE WHEN {past_expiry} THEN %s ELSE %s END, "
            f"reason = CASE WHEN {past_expiry} THEN %s ELSE reason END, "
            f"attempts = CASE WHEN {past_expiry} THEN attempts ELSE attempts + 1 END, "
            f"lease_until = CASE WHEN {past_expiry} THEN NULL ELSE %s END, "
            f"updated = %s "
            f"WHERE id IN ({placeholders}) AND status IN ({', '.join(['%s'] * len(may_leave))}) "
            f"RETURNING {returning}",
            [
                moment,
                Message.Status.EXPIRED,
                Message.Status.SENDING,
                moment,
                EXPIRED_IN_QUEUE,
                moment,
                moment,
                lease,
                now,
                *ids,
                *may_leave,
            ],
        )
        rows = cursor.fetchall()
        status_at = transitions.COLUMNS.index("status")
        if rows and transitions.listening():
            # Claimed (`sending`) or expired by this statement: listeners hear of both in its
            # transaction, as of a move.
            for status in (Message.Status.SENDING, Message.Status.EXPIRED):
                transitions.moved(status, moved_from([row for row in rows if row[status_at] == status], connection))
    claimed = [id_field.to_python(row[0]) for row in rows if row[status_at] == Message.Status.SENDING]
    if len(claimed) < len(rows):
        logger.info("Expired %d message(s) at claim: past their expires_at", len(rows) - len(claimed))
    log_unmatched(Message.Status.SENDING, len(ids), len(rows))
    return Lease(claimed, until)


@dataclass
class Outcome:
    """What happened to one message across its outgoing sends and providers."""

    sent: bool = False
    permanent: bool = False
    retry_after: float | None = None
    provider: str = ""
    provider_message_id: str = ""
    error: str = ""
    attempts: list = field(default_factory=list)
    # The suppression that stopped the message before any provider call (`suppressed:complaint`).
    suppressed: str = ""


SETTLED_FIELDS = [
    "status", "reason", "updated", "sent", "failed", "next_attempt", "provider", "attempts",
    "provider_message_id", "error", "rendered", "to", "lease_until",
]  # fmt: skip


def record(messages: list, attempts: list, lease: Lease) -> None:
    """Write settled messages and their attempts in one transaction (`_write`).

    A message deleted while the batch sent it (its notification's or its tenant's deletion)
    cannot take the attempts that name it: their foreign key fails the transaction at its
    commit. The batch's other messages and attempts are then written without them.
    """
    if not messages:
        return
    try:
        _write(messages, attempts, lease)
    except IntegrityError:
        existing = set(Message.objects.filter(pk__in=[m.pk for m in messages]).values_list("pk", flat=True))
        if len(existing) == len(messages):
            raise
        logger.info(
            "%d of a batch's %d messages were deleted while it sent them", len(messages) - len(existing), len(messages)
        )
        _write([m for m in messages if m.pk in existing], [a for a in attempts if a.message_id in existing], lease)


def _write(messages: list, attempts: list, lease: Lease) -> None:
    """Write settled messages and their attempts in one transaction.

    The messages go as one `executemany` of a plain UPDATE, which psycopg pipelines: Django's
    `bulk_update` builds a CASE WHEN per field and row, and that was half the worker's CPU on
    bulk sends (measured in bench/e2e). One message (a single send) goes as one `execute`: the
    pipeline costs more than it saves for one statement (~0.1 ms, bench/README). Each row is written only if the message is still
    `sending` (every status `settle` decides is entered from there alone) under this batch's
    lease: a receipt that moved it on in the meantime keeps its word, a claim by another worker
    after this one's lease ran out keeps its own, and the write changes nothing.
    """
    if not messages:
        return
    fields = [Message._meta.get_field(name) for name in SETTLED_FIELDS]
    id_field = Message._meta.pk
    quote = connection.ops.quote_name
    sql = (
        f"UPDATE {quote(Message._meta.db_table)} SET "  # noqa: S608 (names from the model, no input)
        + ", ".join(f"{quote(f.column)} = %s" for f in fields)
        + f" WHERE {quote(id_field.column)} = %s AND {quote(Message._meta.get_field('status').column)} = %s"
        + f" AND {quote(Message._meta.get_field('lease_until').column)} = %s"
    )
    token = Message._meta.get_field("lease_until").get_db_prep_value(lease.until, connection)
    rows = [
        [f.get_db_prep_save(getattr(m, f.attname), connection) for f in fields]
        + [id_field.get_db_prep_value(m.pk, connection), Message.Status.SENDING, token]
        for m in messages
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)
        if cursor.rowcount < len(rows):
            log_unmatched("their settled status", len(rows), cursor.rowcount)
            messages = written(messages)
        insert_attempts(attempts)
        if transitions.listening():
            by_status = defaultdict(list)
            for message in messages:
                by_status[message.status].append(transitions.Moved.of(message))
            for status, moved in by_status.items():
                transitions.moved(status, moved)
        # Channels AlertFlow delivers itself store their delivery with the status (the inbox).
        sent = defaultdict(list)
        for message in messages:
            if message.status == Message.Status.SENT and message.channel in BUILTIN:
                sent[message.channel].append(message)
        for channel, delivered in sent.items():
            BUILTIN[channel].recorded(delivered)


def written(messages: list) -> list:
    """Of messages a batch just wrote, those whose row now says what the batch wrote (a row
    that had moved on kept its own `updated`): the rare path after a write matched less."""
    stamps = dict(Message.objects.filter(pk__in=[m.pk for m in messages]).values_list("pk", "updated"))
    return [m for m in messages if stamps.get(m.pk) == m.updated]


def release(interrupted: list, untouched: list, error: str, lease: Lease) -> None:
    """Give back the messages of a batch that was stopped from outside (a time limit, a worker's
    shutdown): none of that is an answer about the message, so none of it is dead-lettered.

    `interrupted` was in a provider's hands and may have left: it is retried after a backoff,
    and its attempt counts. `untouched` was claimed but never tried: it is due again at once,
    and its claim's attempt is given back.
    """
    now = timezone.now()
    for messages, refund in ((interrupted, 0), (untouched, 1)):
        for message in messages:
            delay = retry_delay(message.attempts, None) if not refund else 0
            Message.objects.filter(pk=message.pk, lease_until=lease.until).move(
                Message.Status.RETRYING,
                expected=1,
                lease_until=None,
                reason="interrupted",
                error=error,
                attempts=F("attempts") - refund,
                next_attempt=now + timedelta(seconds=delay),
                updated=now,
            )


def retry_delay(attempts: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never sooner than the provider asked."""
    ceiling = min(settings.ALERTFLOW_RETRY_BASE_SECONDS * 2 ** (attempts - 1), settings.ALERTFLOW_RETRY_MAX_SECONDS)
    return max(random.uniform(0, ceiling), retry_after or 0)


def settle(message: Message, outcome: Outcome) -> None:
    """Decide the message's next status from the outcome (in memory; `record` writes it)."""
    now = timezone.now()
    message.updated, message.lease_until = now, None
    message.provider, message.provider_message_id, message.error = (
        outcome.provider,
        outcome.provider_message_id,
        outcome.error,
    )
    if outcome.suppressed:
        # Suppressed after the fan-out (a bounce or a STOP since): no provider was called, so
        # the claim's attempt is given back.
        message.attempts -= 1
        message.status, message.reason, message.next_attempt = Message.Status.SUPPRESSED, outcome.suppressed, None
    elif outcome.sent:
        message.status, message.sent, message.next_attempt, message.reason = Message.Status.SENT, now, None, ""
    elif not outcome.permanent and not outcome.attempts:
        # No provider was tried (breakers open, rate limits full): not an attempt, so it does not
        # spend the budget; come back when the first provider may be tried again.
        message.attempts -= 1
        message.status, message.reason = Message.Status.RETRYING, "providers_unavailable"
        message.next_attempt = now + timedelta(seconds=(outcome.retry_after or 1) * random.uniform(1, 1.2))
    elif outcome.permanent or message.attempts >= settings.ALERTFLOW_MAX_ATTEMPTS:
        message.status, message.failed, message.next_attempt = Message.Status.FAILED, now, None
        message.reason = "permanent_failure" if outcome.permanent else "retries_exhausted"
    else:
        message.status, message.reason = Message.Status.RETRYING, "transient_failure"
        message.next_attempt = now + timedelta(seconds=retry_delay(message.attempts, outcome.retry_after))
    if message.status == Message.Status.RETRYING and message.expires_at and message.next_attempt >= message.expires_at:
        # The retry would come after the message is useless: it expires now, keeping its error.
        message.status, message.reason, message.next_attempt = Message.Status.EXPIRED, EXPIRED_WHILE_RETRYING, None
