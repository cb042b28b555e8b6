"""The suppression list: addresses a tenant must not contact (DESIGN section 3, step 6).

Every writer goes through `suppress` (the API, the import, provider receipts, inbound SMS
keywords, dead push tokens) and every reader through `blocked` (the fan-out, once per chunk, and
the worker, once per batch, just before the provider calls).

Most tenants never suppress anything, so `blocked` first asks Redis whether the tenant has any
suppression at all (`tenant_may_have_suppressions`): "none" answers without a query. The fact is
kept so that a suppression is seen by every reader once its transaction commits: a writer marks
the tenant "some" before it inserts (and again after commit), and a reader writes "none" only
with SET NX after a query that found nothing, so it can never overwrite a writer's mark. Redis
down: readers query PostgreSQL, and a writer refuses (`SuppressionsUnavailable`, nothing
written): a suppression committed without its mark could be hidden, once Redis answers again, by
a "none" Redis still holds, so it is never committed without one. A web request (a send, at
accept) reads the fact with the tenant's cache versions, in the MGET its authentication makes
(`alertflow.versioned_cache.request_fact`): a suppression committed while the request runs may be
missed there, as by a query a moment earlier, and the worker's read for its batch, just before
the provider calls (in the batch's own MGET, `delivery.pipeline.deliver`), sees it.

`suppression_created` is sent by `suppress` inside the caller's transaction, right after the rows
are inserted, with the new rows: a receiver that writes (an outbox row for the tenant's
`suppression.created` webhook) commits or rolls back with them, so no event is lost and none
names a row that does not exist. Receivers must not call anything slow or external.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver
from django.utils import timezone

from alertflow import redis as shared_redis
from alertflow import versioned_cache
from alertflow.channels import CHANNELS

from .models import Suppression

logger = logging.getLogger(__name__)

# Sent with `tenant_id` and `suppressions` (the list of `Suppression` rows just inserted; never
# empty), inside the transaction that inserted them. See the module docstring.
suppression_created = Signal()

# Reasons a message records when a suppression stops it: `suppressed:hard_bounce`.
REASON_PREFIX = "suppressed:"
# Channels addressed by something a suppression can name: a contact field or a device token
# (email, sms, push). In-app reaches the recipient itself, who has no address to suppress.
ADDRESSED = tuple(c.name for c in CHANNELS.values() if c.contact_field or c.uses_devices)
# Rows per INSERT statement: 6 parameters a row stay far below PostgreSQL's 65,535.
INSERT_BATCH = 1000


# A tenant's "has no suppressions" fact lives this long: a reader queries again after it.
NONE_SECONDS = 60
# "some" outlives any transaction by far (the argument above needs it to last from a writer's
# mark to its commit); it only costs a query per batch, and is recomputed after a day.
SOME_SECONDS = 24 * 3600
NONE, SOME = b"none", b"some"
# The fact's name among the keys a web request reads with the tenant's cache versions.
REQUEST_FACT = "suppressions"
# Readers only: after a Redis error they read PostgreSQL for a while.
_backoff = shared_redis.Backoff("Suppressions fact")


class InvalidAddress(ValueError):
    pass


class SuppressionsUnavailable(shared_redis.WriteRefused):
    """Redis could not take a writer's "some" mark: the suppression is not written (see the
    module docstring). The API answers 503; a provider's webhook answers 503 and is resent; the
    worker drops it, as the provider repeats it at the next send to that address."""

    def __init__(self):
        super().__init__("suppressions_unavailable", "Suppressions")


def normalise(channel: str, address: str) -> str:
    """The address as the channel stores it on a recipient or device (and `Message.to`), by the
    recipient field that holds it: emails lower-cased, phone numbers in E.164; device tokens
    (push) as their device stores them (APNs hex lower-cased, others unchanged). Raises
    `InvalidAddress`."""
    if channel not in ADDRESSED:
        raise InvalidAddress(f"{channel!r} is not a channel with addresses ({', '.join(ADDRESSED)})")
    if not isinstance(address, str) or not address.strip():
        raise InvalidAddress("an address is required")
    address = address.strip()
    max_length = Suppression._meta.get_field("address").max_length
    if len(address.encode()) > max_length:
        raise InvalidAddress(f"an address is at most {max_length} bytes")
    contact_field = CHANNELS[channel].contact_field
    if contact_field:
        return CONTACT_NORMALISERS[contact_field](address)
    from .serializers import APNS_TOKEN_PATTERN  # the serializers import this module

    # An APNs token (hex) is stored lower-cased on its device (DeviceSerializer); other tokens
    # (FCM, Web Push) are case-sensitive and kept as they are.
    return address.lower() if APNS_TOKEN_PATTERN.match(address) else address


def _email(address: str) -> str:
    try:
        validate_email(address)
    except ValidationError:
        raise InvalidAddress(f"{address!r} is not an email address") from None
    return address.lower()


def _phone(address: str) -> str:
    # Imported here: the serializers import this module.
    from rest_framework.exceptions import ValidationError as DrfValidationError

    from .serializers import normalize_phone

    try:
        return normalize_phone(address)
    except DrfValidationError as exc:
        raise InvalidAddress(str(exc.detail[0])) from None


# How each recipient contact field is normalised, as `RecipientSerializer` stores it.
CONTACT_NORMALISERS = {"email": _email, "phone": _phone}


@dataclass(frozen=True)
class Added:
    created: list[Suppression]
    existing: int


def suppress(tenant_id, channel: str, addresses: Iterable[str], reason: str, category_id=None) -> Added:
    """Suppress normalised `addresses` on `channel` for the tenant, for every category
    (`category_id` None) or one. Addresses already suppressed the same way are left as they are
    (their reason and date stay); returns the rows created and how many already existed.

    One `INSERT ... ON CONFLICT DO NOTHING RETURNING` per thousand addresses: concurrent writers
    of the same address (a bounce and a complaint at once) meet at the unique indexes, and only
    the rows really inserted are announced.
    """
    unique = list(dict.fromkeys(addresses))
    if not unique:
        return Added([], 0)
    now = timezone.now()
    table = connection.ops.quote_name(Suppression._meta.db_table)
    columns = ("tenant_id", "channel", "address", "category_id", "reason", "created")
    created: list[Suppression] = []
    # Prepared by the fields, as the ORM would: SQLite's driver takes no UUID (a tenant's pk).
    field = Suppression._meta.get_field
    tenant = field("tenant").get_db_prep_value(tenant_id, connection)
    category = field("category").get_db_prep_value(category_id, connection)
    moment = field("created").get_db_prep_value(now, connection)
    with transaction.atomic(), connection.cursor() as cursor:
        mark_some(tenant_id)
        for start in range(0, len(unique), INSERT_BATCH):
            batch = unique[start : start + INSERT_BATCH]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(batch))
            params = [p for a in batch for p in (tenant, channel, a, category, reason, moment)]
            # No conflict target: either partial unique index may be the one hit (PostgreSQL and
            # SQLite 3.35+ both take ON CONFLICT DO NOTHING with RETURNING).
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} "  # noqa: S608 (no input in the SQL)
                "ON CONFLICT DO NOTHING RETURNING id, address",
                params,
            )
            for pk, address in cursor.fetchall():
                created.append(
                    Suppression(
                        pk=pk,
                        tenant_id=tenant_id,
                        channel=channel,
                        address=address,
                        category_id=category_id,
                        reason=reason,
                        created=now,
                    )
                )
        if created:
            suppression_created.send(Suppression, tenant_id=tenant_id, suppressions=created)
    return Added(created, len(unique) - len(created))


def suppress_one(tenant_id, channel: str, address: str, reason: str) -> bool:
    """A global suppression of one address from a provider's word (a bounce, a complaint, a
    STOP, a dead token); True if it is new. An address the channel cannot name is ignored."""
    try:
        address = normalise(channel, address)
    except InvalidAddress:
        return False
    return bool(suppress(tenant_id, channel, [address], reason).created)


def blocked(tenant_id, pairs: Iterable[tuple[str, str]], category_ids: Iterable) -> dict[tuple, dict]:
    """Which of `pairs` ((channel, address)) the tenant suppressed, in one query:
    `{(channel, address): {category_id or None: reason}}`. Only global suppressions and those of
    `category_ids` are read; `reason_for` picks the one that applies to a message."""
    pairs = {(c, a) for c, a in pairs if c in ADDRESSED and a}
    if not pairs or not tenant_may_have_suppressions(tenant_id):
        return {}
    wanted = Q(category__isnull=True)
    categories = [c for c in set(category_ids) if c is not None]
    if categories:
        wanted |= Q(category_id__in=categories)
    by_channel: dict[str, set] = {}
    for channel, address in pairs:
        by_channel.setdefault(channel, set()).add(address)
    where = Q()
    for channel, addresses in by_channel.items():
        where |= Q(channel=channel, address__in=addresses)
    found: dict[tuple, dict] = {}
    rows = Suppression.objects.filter(where, wanted, tenant_id=tenant_id).values_list(
        "channel", "address", "category_id", "reason"
    )
    for channel, address, category_id, reason in rows:
        found.setdefault((channel, address), {})[category_id] = reason
    return found


def _key(tenant_id) -> str:
    return f"suppressions:any:{tenant_id}"


def tenant_may_have_suppressions(tenant_id) -> bool:
    """False only when the tenant is known to have no suppression at all: from Redis (no
    query), or from a query that found none, then remembered with SET NX (see the module
    docstring: a writer's "some" mark always wins). True when unsure (Redis down)."""
    if not _backoff.usable():
        return True
    key = _key(tenant_id)
    # In a web request (a send) or a worker's batch, read with the tenant's cache versions: no
    # round trip of its own.
    read, fact = versioned_cache.request_fact(REQUEST_FACT, tenant_id)
    if not read:
        try:
            fact = shared_redis.client().get(key)
        except Exception:  # any redis-py connection or timeout error
            _backoff.failed("get")
            return True
    if fact is not None:
        return fact != NONE
    some = Suppression.objects.filter(tenant_id=tenant_id).exists()
    try:
        if some:
            shared_redis.client().set(key, SOME, ex=SOME_SECONDS)
        else:
            shared_redis.client().set(key, NONE, ex=NONE_SECONDS, nx=True)
    except Exception:
        _backoff.failed("set")
    return some


versioned_cache.read_with_versions(REQUEST_FACT, _key)


def mark_some(tenant_id) -> None:
    """The tenant has (or is about to have) a suppression: called before the insert, inside the
    writer's transaction, and again once it commits, so no reader's "none" outlives the commit
    (a reader that queried before the commit and tries to write "none" after the first mark
    finds the key taken).

    Raises `SuppressionsUnavailable` when the first mark fails, which rolls the writer's
    transaction back: a "none" Redis still holds would hide the suppression for up to
    NONE_SECONDS. The mark after the commit is only logged when it fails: the first one stands
    (it lasts SOME_SECONDS), it only covers a key Redis lost meanwhile."""
    key = _key(tenant_id)
    versioned_cache.forget_request_versions(tenant_id)  # this request's read of the fact is old now
    try:
        shared_redis.client().set(key, SOME, ex=SOME_SECONDS)
    except Exception as exc:  # any redis-py connection or timeout error
        logger.warning("Could not mark tenant %s as having suppressions in Redis", tenant_id, exc_info=True)
        raise SuppressionsUnavailable from exc

    def mark_again() -> None:
        try:
            shared_redis.client().set(key, SOME, ex=SOME_SECONDS)
        except Exception:
            logger.error("Could not mark tenant %s as having suppressions in Redis", tenant_id, exc_info=True)

    transaction.on_commit(mark_again)


@receiver(post_save, sender=Suppression, dispatch_uid="preferences.suppression_saved")
def suppression_saved(sender, instance: Suppression, **kwargs) -> None:
    """A suppression written past `suppress` (the admin, a test's ORM call): readers must see it too."""
    mark_some(instance.tenant_id)


def reason_for(found: dict, channel: str, address: str, category_id) -> str | None:
    """The message reason (`suppressed:complaint`) if `found` (from `blocked`) suppresses
    `address` on `channel` for the category, else None. A global suppression wins."""
    rows = found.get((channel, address))
    if not rows:
        return None
    reason = rows.get(None) or (rows.get(category_id) if category_id is not None else None)
    return f"{REASON_PREFIX}{reason}" if reason else None


def lift(tenant_id, channel: str, address: str, reasons: Iterable[str]) -> int:
    """Remove the tenant's suppressions of `address` on `channel` that came for `reasons` (an
    SMS START lifts what STOP set, not a bounce or a manual entry); return how many went."""
    deleted, _ = Suppression.objects.filter(
        tenant_id=tenant_id, channel=channel, address=address, reason__in=list(reasons)
    ).delete()
    return deleted


def reason_for_all(found: dict, channel: str, addresses: list[str], category_id) -> str | None:
    """The message reason when every one of a message's `addresses` (one for email and SMS, one
    per device for push) is suppressed, else None: a push still goes to the devices left."""
    reasons = [reason_for(found, channel, address, category_id) for address in addresses]
    return reasons[0] if reasons and all(reasons) else None
