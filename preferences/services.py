"""Recipients, preferences and topics: the work that spans models, and the one preference decision.

The send pipeline uses `upsert_recipient` (inline recipients) and `decide` (one call per
recipient, category and channel). `decide` reads a cached copy of the recipient's preference
document and timezone, so a warm send path costs no query; every write invalidates it.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.db import models, transaction
from django.utils import timezone
from rest_framework import serializers

from alertflow.choices import Channel
from alertflow.compiled import CompiledLookup
from alertflow.errors import ApiError
from alertflow.redis import Backoff, WriteRefused
from alertflow.versioned_cache import VersionedCache
from tenants.models import Category, Tenant

from . import suppressions, zones
from .models import CHANNELS, DEFAULT_TIMEZONE, Device, Preference, Recipient, Subscription, Suppression, Topic
from .serializers import PreferencesSerializer, RecipientSerializer, validate_external_id

# Writes invalidate the entry; the expiry only bounds how long a stale copy can survive an
# invalidation that failed because Redis was unreachable at that moment.
PREFERENCES_CACHE_SECONDS = 15 * 60
# After a cache error, go straight to PostgreSQL for a while instead of paying Redis's connect
# timeout (2 s, settings.CACHES) on every message of a send.
_cache_backoff = Backoff("Preferences cache")


class Outcome(models.TextChoices):
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    DEFERRED = "deferred"


class Reason(models.TextChoices):
    CRITICAL = "critical"  # allowed whatever the preferences say
    CHANNEL_OPTED_OUT = "channel_opted_out"
    CATEGORY_OPTED_OUT = "category_opted_out"
    QUIET_HOURS = "quiet_hours"


@dataclass(frozen=True)
class Decision:
    """What the recipient's preferences say about one message.

    `outcome` is an `Outcome`; `reason` a `Reason` (empty for a plain allow); `until` is the
    aware UTC instant a deferred message may go out, None otherwise.
    """

    outcome: str
    reason: str = ""
    until: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome == Outcome.ALLOWED


# --- Recipients ---------------------------------------------------------------------------------


# Recipients named by external id in sends, with their preferences, per process
# (alertflow/versioned_cache.py); every change to a recipient row reaches it through the signals
# in preferences/signals.py, every change to preferences through `invalidate_preferences`.
recipients_by_id = VersionedCache("recipients")


# The query behind a miss of that cache, compiled once per process (alertflow/compiled.py).
_recipient_by_id = CompiledLookup(
    Recipient,
    lambda tenant, external_id: (
        Recipient.objects.filter(tenant=tenant, external_id=external_id).select_related("preference").order_by()[:1]
    ),
)


def find_recipient(tenant: Tenant, external_id: str) -> Recipient | None:
    """The tenant's recipient `external_id`, or None, with its preferences read in the same
    query (`cached_preferences_many` then answers from them, without Redis). The instance may be
    shared with other requests of the process: read it, never change it."""

    def load() -> Recipient | None:
        found = _recipient_by_id(tenant=tenant.pk, external_id=external_id)
        return found[0] if found else None

    return recipients_by_id.get(tenant.pk, external_id, load)


def upsert_recipient(tenant: Tenant, external_id: str, fields: dict) -> tuple[Recipient, bool]:
    """Create or update the tenant's recipient `external_id`; return it and whether it was created.

    `fields` is the body of `PUT /recipients/{id}` (`email`, `phone`, `name`, `locale`,
    `timezone`, `data`): the keys present are set, the others kept, `null` clears one; other
    keys are ignored. Raises DRF's `ValidationError` on bad input, before writing anything.
    An update that changes nothing writes nothing, so a send naming known recipients inline
    costs no write per message.
    """
    try:
        validate_external_id(external_id)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"external_id": exc.detail}) from None
    serializer = RecipientSerializer(data=fields, partial=True)
    serializer.is_valid(raise_exception=True)
    values = dict(serializer.validated_data)
    with transaction.atomic():
        # get_or_create retries the read when a concurrent PUT inserted the same id first.
        recipient, created = Recipient.objects.select_for_update().get_or_create(
            tenant=tenant, external_id=external_id, defaults=values
        )
        if not created:
            changed = [name for name, value in values.items() if getattr(recipient, name) != value]
            if changed:
                for name in changed:
                    setattr(recipient, name, values[name])
                recipient.save(update_fields=[*changed, "updated"])
    return recipient, created


@transaction.atomic
def erase_recipient(recipient: Recipient) -> None:
    """Delete the recipient with their personal data: devices, preferences, subscriptions."""
    # Their row locked first: a send to them commits its messages before (the delete below then
    # finds and deletes them) or waits for this commit (its foreign key check locks the row) and
    # is refused as a send to an unknown recipient. Unlocked, messages committed between the
    # delete's collection and its DELETE failed this commit on the foreign key: a 500.
    Recipient.objects.select_for_update().filter(pk=recipient.pk).exists()
    recipient.delete()  # cascades; the post_delete signal drops the cached preferences


# --- Devices ------------------------------------------------------------------------------------


@transaction.atomic
def register_device(recipient: Recipient, platform: str, token: str) -> tuple[Device, bool]:
    """Register a push token for a recipient; return the device and whether it is new.

    A known token is reactivated and moved to this recipient: a token identifies an app
    install, and the person now signed in on it is the one who should get its pushes.
    """
    device, created = Device.objects.select_for_update().get_or_create(
        tenant_id=recipient.tenant_id, platform=platform, token=token, defaults={"recipient": recipient}
    )
    if not created:
        device.recipient = recipient
        device.active, device.reason, device.last_seen = True, "", timezone.now()
        device.save(update_fields=["recipient", "active", "reason", "last_seen"])
        # The app says the token works again: the dead-token suppression a provider's answer
        # left goes with the deactivation (one the tenant added by hand stays).
        suppressions.lift(recipient.tenant_id, Channel.PUSH, token, [Suppression.Reason.DEAD_TOKEN])
    return device, created


# --- Preferences --------------------------------------------------------------------------------


def default_document() -> dict:
    return {"channels": dict.fromkeys(CHANNELS, True), "categories": {}, "quiet_hours": None}


def _document(channels, categories, quiet_start: dtime | None, quiet_end: dtime | None) -> dict:
    document = default_document()
    document["channels"].update(channels or {})
    document["categories"] = categories or {}
    if quiet_start is not None and quiet_end is not None:
        document["quiet_hours"] = {"start": quiet_start.strftime("%H:%M"), "end": quiet_end.strftime("%H:%M")}
    return document


def get_preferences(recipient: Recipient) -> dict:
    """The recipient's preference document as the API shows it, read from the database."""
    preference = Preference.objects.filter(recipient_id=recipient.pk).first()
    if preference is None:
        return default_document()
    return _document(preference.channels, preference.categories, preference.quiet_start, preference.quiet_end)


@transaction.atomic
def set_preferences(recipient: Recipient, validated: dict) -> dict:
    """Replace the recipient's preferences with a validated `PreferencesSerializer` document.
    Raises `PreferencesUnavailable` (nothing written) when Redis cannot hear of it."""
    quiet = validated.get("quiet_hours") or {}
    channels = {channel: validated.get("channels", {}).get(channel, True) for channel in CHANNELS}
    Preference.objects.update_or_create(
        recipient=recipient,
        defaults={
            "channels": channels,
            "categories": validated.get("categories") or {},
            "quiet_start": quiet.get("start"),
            "quiet_end": quiet.get("end"),
        },
    )
    invalidate_preferences(recipient.tenant_id, recipient.pk, required=True)
    return get_preferences(recipient)


@transaction.atomic
def opt_out(recipient: Recipient, category: Category | None, channel: str, *, source: str) -> bool:
    """Turn `channel` off for the recipient's `category` (None: the channel switch itself, which
    governs mail sent without a category); return whether anything changed (False: it was off).

    The one-click unsubscribe link's write (`preferences.pages`), through the same document
    `decide` reads, so the next send is suppressed as `category_opted_out` (or
    `channel_opted_out`). Idempotent, and safe against a concurrent PUT of the preferences: the
    row is locked while its JSON is changed. `source` names the writer for `signals.opted_out`.
    Raises ValueError for an unknown channel or a category of another tenant, and
    `PreferencesUnavailable` (nothing written) when Redis cannot hear of it.
    """
    if channel not in CHANNELS:
        raise ValueError(f"Unknown channel {channel!r}")
    if category is not None and category.tenant_id != recipient.tenant_id:
        raise ValueError("The category belongs to another tenant")
    preference, _ = Preference.objects.select_for_update().get_or_create(
        recipient=recipient, defaults={"channels": dict.fromkeys(CHANNELS, True)}
    )
    if category is None:
        if preference.channels.get(channel, True) is False:
            return False
        preference.channels = {**dict.fromkeys(CHANNELS, True), **preference.channels, channel: False}
        preference.save(update_fields=["channels", "updated"])
    else:
        current = preference.categories.get(category.key) or {}
        if current.get(channel) is False:
            return False
        preference.categories = {**preference.categories, category.key: {**current, channel: False}}
        preference.save(update_fields=["categories", "updated"])
    invalidate_preferences(recipient.tenant_id, recipient.pk, required=True)
    from .signals import opted_out  # signals imports this module

    opted_out.send(sender=Recipient, recipient=recipient, category=category, channel=channel, source=source)
    return True


def switch_channels(recipient: Recipient, switches: dict) -> dict:
    """Turn the channels `switches` names on or off (`{"sms": false}`) and keep the rest of the
    recipient's document: the seed adapters' channel switches. Returns the document. Raises DRF's
    ValidationError for an unknown channel, before writing anything."""
    document = get_preferences(recipient)
    document["channels"].update(switches)
    context = {"tenant": recipient.tenant_id, "recipient": recipient}
    serializer = PreferencesSerializer(data=document, context=context)
    serializer.is_valid(raise_exception=True)
    return set_preferences(recipient, serializer.validated_data)


def cache_key(tenant_id, recipient_id) -> str:
    return f"prefs:v1:{tenant_id}:{recipient_id}"


def _load_from_database(recipient: Recipient) -> dict:
    row = (
        Recipient.objects.filter(pk=recipient.pk)
        .values_list(
            "timezone",
            "preference__channels",
            "preference__categories",
            "preference__quiet_start",
            "preference__quiet_end",
        )
        .first()
    )
    if row is None:  # erased meanwhile: the defaults, in the timezone we were handed
        return {"timezone": recipient.timezone or DEFAULT_TIMEZONE, "preferences": default_document()}
    tz, channels, categories, quiet_start, quiet_end = row
    return {"timezone": tz, "preferences": _document(channels, categories, quiet_start, quiet_end)}


def cached_preferences(recipient: Recipient) -> dict:
    """`{"timezone", "preferences"}` for the recipient: from the cache, else PostgreSQL.

    Never raises because of the cache: a send must not fail because Redis is down.
    """
    key = cache_key(recipient.tenant_id, recipient.pk)
    if _cache_backoff.usable():
        try:
            entry = cache.get(key)
        except Exception:  # any redis-py connection or timeout error
            _cache_backoff.failed("get")
        else:
            if entry is not None:
                return entry
    entry = _load_from_database(recipient)
    if _cache_backoff.usable() and not _invalidated_here([key]):
        try:
            cache.set(key, entry, PREFERENCES_CACHE_SECONDS)
        except Exception:
            _cache_backoff.failed("set")
    return entry


def cached_preferences_many(recipients: list[Recipient]) -> dict:
    """`cached_preferences` for many recipients at once: `{recipient.pk: entry}`.

    One cache round trip for all, one query for the misses, one to cache them: a fan-out chunk
    of 500 recipients costs three round trips instead of up to 1,500.
    """
    # A recipient from `find_recipient` brought its preferences along: no round trip for it.
    entries = {r.pk: _loaded_entry(r) for r in recipients if Recipient.preference.is_cached(r)}
    keys = {cache_key(r.tenant_id, r.pk): r for r in recipients if r.pk not in entries}
    if not keys:
        return entries
    found = {}
    if _cache_backoff.usable():
        try:
            found = cache.get_many(list(keys))
        except Exception:
            _cache_backoff.failed("get_many")
    entries.update((keys[key].pk, entry) for key, entry in found.items())
    missing = [r for r in recipients if r.pk not in entries]
    if missing:
        loaded = _load_many_from_database(missing)
        entries.update(loaded)
        kept = {cache_key(r.tenant_id, r.pk): loaded[r.pk] for r in missing}
        for key in _invalidated_here(kept):
            del kept[key]
        if kept and _cache_backoff.usable():
            try:
                cache.set_many(kept, PREFERENCES_CACHE_SECONDS)
            except Exception:
                _cache_backoff.failed("set_many")
    return entries


def _invalidated_here(keys) -> set[str]:
    """The cache keys among `keys` that the open transaction invalidated (`invalidate_preferences`
    registered their delete for its commit): such an entry is not cached. Read in the
    transaction, it may hold the transaction's own writes; a rollback would leave them cached
    for PREFERENCES_CACHE_SECONDS (a send refused with 403 or 429 after upserting its inline
    recipient's timezone), and a commit deletes it anyway. Django drops the callbacks of what
    rolled back from `run_on_commit` (its list of them, which captureOnCommitCallbacks reads too)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block or not connection.run_on_commit:
        return set()
    pending = {getattr(func, "preferences_key", None) for _savepoints, func, _robust in connection.run_on_commit}
    return pending.intersection(keys)


def _loaded_entry(recipient: Recipient) -> dict:
    """The `cached_preferences` entry of a recipient read with its preferences (`select_related`)."""
    preference = Recipient.preference.related.get_cached_value(recipient)  # None: no row, the defaults
    if preference is None:
        return {"timezone": recipient.timezone, "preferences": default_document()}
    document = _document(preference.channels, preference.categories, preference.quiet_start, preference.quiet_end)
    return {"timezone": recipient.timezone, "preferences": document}


def _load_many_from_database(recipients: list[Recipient]) -> dict:
    rows = Recipient.objects.filter(pk__in=[r.pk for r in recipients]).values_list(
        "pk",
        "timezone",
        "preference__channels",
        "preference__categories",
        "preference__quiet_start",
        "preference__quiet_end",
    )
    entries = {
        pk: {"timezone": tz, "preferences": _document(channels, categories, quiet_start, quiet_end)}
        for pk, tz, channels, categories, quiet_start, quiet_end in rows
    }
    for recipient in recipients:  # erased meanwhile: the defaults, in the timezone we were handed
        entries.setdefault(
            recipient.pk, {"timezone": recipient.timezone or DEFAULT_TIMEZONE, "preferences": default_document()}
        )
    return entries


class PreferencesUnavailable(WriteRefused):
    """Redis could not hear of a preference write: the write is refused, nothing is written.
    Committed unheard, an opt-out would be ignored by every process that still holds the old
    document (up to PREFERENCES_CACHE_SECONDS) while the sends go on. The API answers 503; the
    one-click unsubscribe a 503 page, which the mail provider or the person retries."""

    def __init__(self):
        super().__init__("preferences_unavailable", "Preferences")


def invalidate_preferences(tenant_id, recipient_id, *, required: bool = False) -> None:
    """Drop the cached copy now, and again after commit; and the tenant's recipients cached by
    every process (`find_recipient`), which carry their preferences.

    The second delete covers a reader that, between our write and our commit, read the old
    row and cached it. A first invalidation that fails raises `PreferencesUnavailable` when
    `required` (the preference writers: called inside their transaction, which rolls back).
    Otherwise (a recipient row, which sends write too) it is logged, not raised: the write
    stands, and the entries' expiry bounds the staleness of the timezone they carry.
    """
    if not recipients_by_id.changed(tenant_id) and required:
        raise PreferencesUnavailable
    key = cache_key(tenant_id, recipient_id)

    def delete() -> bool:
        try:
            cache.delete(key)
        except Exception:
            _cache_backoff.failed("delete")
            return False
        return True

    if delete():
        delete.preferences_key = key  # for `_invalidated_here`
        transaction.on_commit(delete)
    elif required:
        raise PreferencesUnavailable


def decide(
    recipient: Recipient,
    category: Category | None,
    channel: str,
    at: datetime | None = None,
    entry: dict | None = None,
) -> Decision:
    """May a message of `category` (None: no category) reach `recipient` on `channel` at `at` (now)?

    In order: a critical category is always allowed; a category override
    (`categories[key][channel]`) beats the channel switch either way; quiet hours defer to the
    end of the window in the recipient's timezone. Costs no query when the cache is warm.
    Raises ValueError for an unknown channel, a naive `at` or a category of another tenant.
    `entry` is the recipient's preferences from `cached_preferences_many`, for callers deciding
    for many recipients at once; without it they are read here.
    """
    if channel not in CHANNELS:
        raise ValueError(f"Unknown channel {channel!r}")
    if at is not None and at.utcoffset() is None:
        raise ValueError("`at` must be an aware datetime")
    if category is not None:
        if category.tenant_id != recipient.tenant_id:
            raise ValueError("The category belongs to another tenant")
        if category.critical:
            return Decision(Outcome.ALLOWED, Reason.CRITICAL)

    if entry is None:
        entry = cached_preferences(recipient)
    document = entry["preferences"]
    override = document["categories"].get(category.key, {}).get(channel) if category is not None else None
    if override is False:
        return Decision(Outcome.BLOCKED, Reason.CATEGORY_OPTED_OUT)
    if override is None and not document["channels"].get(channel, True):
        return Decision(Outcome.BLOCKED, Reason.CHANNEL_OPTED_OUT)

    quiet = document["quiet_hours"]
    if quiet:
        until = quiet_hours_end(
            at or timezone.now(),
            dtime.fromisoformat(quiet["start"]),
            dtime.fromisoformat(quiet["end"]),
            zones.stored_zone(entry["timezone"]),
        )
        if until is not None:
            return Decision(Outcome.DEFERRED, Reason.QUIET_HOURS, until)
    return Decision(Outcome.ALLOWED)


def quiet_hours_end(at: datetime, start: dtime, end: dtime, tz: ZoneInfo) -> datetime | None:
    """If `at` falls in the daily window [start, end) of wall-clock time in `tz`, the UTC instant
    the window ends; else None. `start > end` is a window across midnight (22:00-07:00).
    """
    local = at.astimezone(tz)
    now = local.time()
    if start < end:
        if not start <= now < end:
            return None
        end_day = local.date()
    elif now >= start:
        end_day = local.date() + timedelta(days=1)
    elif now < end:
        end_day = local.date()
    else:
        return None
    until = local_instant(end_day, end, tz)
    # Only on a fall-back night: a window ending at a repeated time (01:30) has ended at its
    # first occurrence already while `at` is in the second pass; nothing is left to wait for.
    return until if until > at else None


def local_instant(day: date, wall: dtime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time on a day in `tz`.

    An ambiguous time (fall-back) is its first occurrence; a time that does not exist
    (spring-forward gap, e.g. 02:30 in New York on 2026-03-08) is the first valid instant
    after it: the transition itself (03:00 EDT).
    """
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)  # PEP 495: fold=0 is the earlier reading
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # In a gap the two readings straddle the transition; find its second by bisection.
    other = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    before, after = int(min(first, other).timestamp()), int(max(first, other).timestamp())
    offset_after = datetime.fromtimestamp(after, tz).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


# --- Topics -------------------------------------------------------------------------------------


@transaction.atomic
def change_subscribers(topic: Topic, add: list[str], remove: list[str]) -> dict:
    """Subscribe and unsubscribe recipients by external id, idempotently, all or nothing.

    Raises ApiError 400 `unknown_recipients` (listing them) if any id is not a recipient of the
    topic's tenant; nothing is written then. Returns `{"added", "removed", "subscribers"}`.
    """
    wanted = [*add, *remove]
    ids = dict(
        Recipient.objects.filter(tenant_id=topic.tenant_id, external_id__in=wanted)
        .order_by()
        .values_list("external_id", "id")
    )
    unknown = [external_id for external_id in wanted if external_id not in ids]
    if unknown:
        shown = ", ".join(unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        raise ApiError(400, "unknown_recipients", f"No such recipient(s): {shown}.", {"unknown": unknown})

    before = topic.subscriptions.count()
    Subscription.objects.bulk_create(
        [Subscription(topic=topic, recipient_id=ids[external_id]) for external_id in add],
        ignore_conflicts=True,  # already subscribed: nothing to do (the unique constraint decides)
        batch_size=5000,
    )
    removed = 0
    if remove:
        removed, _ = Subscription.objects.filter(
            topic=topic, recipient_id__in=[ids[external_id] for external_id in remove]
        ).delete()
    after = topic.subscriptions.count()
    return {"added": after - before + removed, "removed": removed, "subscribers": after}
