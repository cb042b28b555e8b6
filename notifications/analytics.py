"""Delivery analytics, served from aggregates kept as messages move, never from the message table.

Two tables (notifications/models.py) are incremented in the transaction of each status write:
`DeliveryCount` (messages entering a status per hour, tenant, channel, category and provider)
and `DeliveryLatency` (a fixed-bucket histogram of accept-to-sent and accept-to-delivered
times with the same key). Writers: accept and the fan-out for the messages they write
(`written`), and a `notifications.transitions` listener for every later status write
(`moved`). Each increment is one `INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`
(PostgreSQL and SQLite), so concurrent workers add up instead of overwriting each other, into
the rows of their connection's shard (alertflow/counters.py), so they rarely wait for each
other's commits; every reader sums the shards.

`report` reads them for GET /api/v1/analytics/deliveries; `counts_since` for the admin dashboard.
"""

import math
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from alertflow.counters import shard_sql
from alertflow.errors import ApiError
from alertflow.together import Statement, run_together

from . import stats, transitions
from .models import DeliveryCount, DeliveryLatency, Message

ACCEPTED = "accepted"
# The statuses counted, besides `accepted`: where messages end up, and what receipts and readers
# say. The in-flight churn (sending, queued again, retrying) is no outcome: /metrics counts it.
COUNTED = (
    Message.Status.SUPPRESSED, Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ,
    Message.Status.FAILED, Message.Status.BOUNCED, Message.Status.COMPLAINED, Message.Status.EXPIRED,
    Message.Status.CANCELLED,
)  # fmt: skip
# Latency stages: the status whose timestamp ends the clock, and the Moved field holding it.
STAGES = {Message.Status.SENT: "sent", Message.Status.DELIVERED: "delivered"}

# Log-spaced latency buckets: bucket 0 holds up to 10 ms, bucket b up to 10 ms * 2^(b/2) (each
# √2 wider than the last, so a percentile read from them is within ~20%), and the last one
# everything above ~7.6 days. Fixed for good: rows written with other bounds would not add up.
BASE_MS = 10.0
STEPS_PER_DOUBLING = 2
BUCKETS = 54

GROUPS = ("channel", "status", "category", "day", "provider")
KEY_FIELDS = ["tenant", "hour", "channel", "category", "provider"]


def bucket_of(ms: float) -> int:
    if ms <= BASE_MS:
        return 0
    return min(math.ceil(STEPS_PER_DOUBLING * math.log2(ms / BASE_MS)), BUCKETS - 1)


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """(lower, upper] in milliseconds."""
    upper = BASE_MS * 2 ** (bucket / STEPS_PER_DOUBLING)
    return (0.0 if bucket == 0 else BASE_MS * 2 ** ((bucket - 1) / STEPS_PER_DOUBLING), upper)


def percentile(histogram: dict[int, int], q: float) -> float | None:
    """The `q` quantile (0..1) in milliseconds, interpolated within its bucket; None if empty."""
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for bucket in sorted(histogram):
        n = histogram[bucket]
        if n and seen + n >= rank:
            lower, upper = bucket_bounds(bucket)
            return round(lower + (upper - lower) * max(rank - seen, 0) / n, 1)
        seen += n
    return round(bucket_bounds(max(histogram))[1], 1)


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --- Writing ---------------------------------------------------------------------------------


def increment(model, key_fields: list[str], increments: Counter) -> None:
    """Add `increments` ({key tuple: n}) to `model`'s rows in one statement, creating the
    missing ones (see `increment_statement`)."""
    run_together([increment_statement(model, key_fields, increments)])


def increment_statement(model, key_fields: list[str], increments: Counter) -> Statement | None:
    """`INSERT ... ON CONFLICT (key, shard) DO UPDATE SET n = <table>.n + excluded.n` adding
    `increments` to `model`'s rows of the connection's shard (alertflow/counters.py; None:
    nothing to add).

    Rows go in key order, so two transactions incrementing the same rows lock them in the same
    order and never deadlock.
    """
    if not increments:
        return None
    meta = model._meta
    fields = [meta.get_field(name) for name in key_fields]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = [quote(f.column) for f in fields]
    rows = sorted(increments.items(), key=lambda item: tuple(str(part) for part in item[0]))
    params = []
    for key, n in rows:
        params += [f.get_db_prep_save(value, connection) for f, value in zip(fields, key, strict=True)] + [n]
    one = "(" + ", ".join(["%s"] * len(fields)) + f", {shard_sql(connection)}, %s)"
    key = ", ".join([*columns, quote("shard")])
    sql = (
        f"INSERT INTO {table} ({key}, n) VALUES "  # noqa: S608 (names from the model)
        + ", ".join([one] * len(rows))
        + f" ON CONFLICT ({key}) DO UPDATE SET n = {table}.n + excluded.n"
    )
    return sql, params


def add(counts: Counter, latencies: Counter) -> None:
    increment(DeliveryCount, [*KEY_FIELDS, "status"], counts)
    increment(DeliveryLatency, [*KEY_FIELDS, "stage", "bucket"], latencies)


def written(messages: list[Message]) -> None:
    """Messages just inserted by accept or a fan-out chunk, in its transaction: each is
    `accepted`, and counted in its first status too when that is an outcome (`suppressed`)."""
    run_together([written_statement(messages)])


def written_statement(messages: list[Message]) -> Statement | None:
    """The upsert `written` runs, for a caller that runs it with its other writes
    (`run_together`); None for no messages."""
    if not messages:
        return None
    hour = hour_of(timezone.now())
    counts = Counter()
    for m in messages:
        notification = m.notification
        category = notification.category.key if notification.category_id else ""
        key = (m.tenant_id, hour, m.channel, category, "")
        counts[(*key, ACCEPTED)] += 1
        if m.status in COUNTED:
            counts[(*key, m.status)] += 1
    return increment_statement(DeliveryCount, [*KEY_FIELDS, "status"], counts)


def moved(status: str, rows: list[transitions.Moved]) -> None:
    """A transition listener: count the messages that entered an outcome status, and the time
    each took from acceptance (or its requested send time) when the status ends a stage.

    What the rows do not carry (category, provider, when the clock started) comes with them from
    the worker's batch record (`Moved.facts`); for other writers, one query per status write."""
    if status not in COUNTED:
        return
    hour = hour_of(timezone.now())
    stage = STAGES.get(status)
    counts, latencies, observed = Counter(), Counter(), []
    for row, facts in with_facts(rows):
        key = (row.tenant_id, hour, row.channel, facts.category, facts.provider)
        counts[(*key, status)] += 1
        ended = getattr(row, stage) if stage else None
        if ended is not None:
            started = max(facts.created, facts.send_at) if facts.send_at else facts.created
            seconds = max((ended - started).total_seconds(), 0.0)
            latencies[(*key, stage, bucket_of(seconds * 1000))] += 1
            if status == Message.Status.SENT:
                observed.append((row.channel, seconds))
    add(counts, latencies)
    stats.observe_sent(observed)


def with_facts(rows: list[transitions.Moved]) -> list[tuple[transitions.Moved, transitions.Facts]]:
    """Each row with its facts: carried, or read back in one query for the rows without them (a
    message deleted meanwhile is not counted)."""
    missing = {row.id: row for row in rows if row.facts is None}
    found = [(row, row.facts) for row in rows if row.facts is not None]
    if missing:
        read_back = Message.objects.filter(pk__in=missing).values_list(
            "pk", "provider", "created", "notification__send_at", "notification__category__key"
        )
        for pk, provider, created, send_at, category in read_back:
            found.append((missing[pk], transitions.Facts(provider, created, send_at, category or "")))
    return found


# --- Reading ---------------------------------------------------------------------------------


def counts_since(since: datetime) -> dict[str, dict[str, int]]:
    """Every tenant's messages per channel and status from the hour holding `since` on (the
    admin dashboard)."""
    counts = defaultdict(dict)
    rows = DeliveryCount.objects.filter(hour__gte=hour_of(since)).values_list("channel", "status").annotate(Sum("n"))
    for channel, status, n in rows.order_by():
        counts[channel][status] = n
    return counts


class Range:
    """The `from` and `to` of a report: ISO dates (whole days, `to` included) or date-times."""

    def __init__(self, params) -> None:
        try:
            end, whole_day = self.moment(params.get("to"), "to", end=True)
            start, _ = self.moment(params.get("from"), "from")
            end = end or timezone.now()
            start = start or end - timedelta(days=7)
            # Both in UTC too (the database's), and the aggregates' first whole hour in the range
            # (an hour counts if it starts in it): an offset can move either past year 1 or 9999.
            end.astimezone(UTC)
            first_hour = start if start == hour_of(start) else hour_of(start) + timedelta(hours=1)
        except OverflowError:
            raise ApiError(400, "invalid_range", "from and to must be dates between years 1 and 9999.") from None
        # `to` as a day ends where the next day starts: from=2026-12-02&to=2026-12-01 is inverted.
        if start > end or (whole_day and start >= end):
            raise ApiError(400, "invalid_range", "from must not be after to.", {"params": ["from", "to"]})
        most = settings.ALERTFLOW_ANALYTICS_MAX_DAYS
        if end - start > timedelta(days=most):
            raise ApiError(400, "range_too_long", f"from and to may be at most {most} days apart.", {"max_days": most})
        self.start, self.end, self.first_hour = start, end, first_hour

    @staticmethod
    def moment(value: str | None, param: str, end: bool = False) -> tuple[datetime | None, bool]:
        """The moment `value` names, and whether it named a whole day."""
        if value is None or value == "":
            return None, False
        try:
            # A date first: parse_datetime would also take "2026-12-01", as its midnight.
            day = parse_date(value)
            moment = None if day else parse_datetime(value)
        except ValueError:  # well formed, but no such date (2026-02-30)
            moment = day = None
        if day is not None:
            # A day is whole: `to=2026-12-01` includes the 1st.
            return datetime.combine(day + timedelta(days=1) if end else day, time.min, tzinfo=UTC), True
        if moment is None:
            raise ApiError(
                400,
                f"invalid_{param}",
                f"{param} must be an ISO 8601 date (2026-12-01) or date-time (2026-12-01T09:00:00Z).",
                {"param": param},
            )
        return (moment.replace(tzinfo=UTC) if timezone.is_naive(moment) else moment), False


def group_by_param(params) -> str:
    group = params.get("group_by") or "channel"
    if group not in GROUPS:
        raise ApiError(
            400,
            "invalid_group_by",
            f"group_by must be one of: {', '.join(GROUPS)}.",
            {"param": "group_by", "choices": list(GROUPS)},
        )
    return group


def summary(counts: dict[str, int], histograms: dict[str, dict[int, int]] | None) -> dict:
    """Counts per status, the rates, and the latency percentiles of one group."""
    sent = counts.get(Message.Status.SENT, 0)
    settled = sent + counts.get(Message.Status.FAILED, 0) + counts.get(Message.Status.EXPIRED, 0)
    body = {
        "counts": {status: counts.get(status, 0) for status in (ACCEPTED, *COUNTED)},
        # Of the messages whose sending ended in the range, the share a provider took.
        "success_rate": round(sent / settled, 4) if settled else None,
        # Of the messages sent in the range, the share whose delivery a provider confirmed.
        "delivery_rate": round(counts.get(Message.Status.DELIVERED, 0) / sent, 4) if sent else None,
    }
    if histograms is not None:
        body["latency_ms"] = {
            stage: {
                "count": sum(histograms.get(stage, {}).values()),
                "p50": percentile(histograms.get(stage, {}), 0.50),
                "p95": percentile(histograms.get(stage, {}), 0.95),
            }
            for stage in STAGES.values()
        }
    return body


def report(tenant, params) -> dict:
    """GET /api/v1/analytics/deliveries: the tenant's counts, rates and latency percentiles in
    a range, per group. Raises ApiError 400 naming the parameter that is wrong."""
    span, group = Range(params), group_by_param(params)
    # Whole hours: the aggregates' unit. An hour counts if it starts within the range.
    window = {"tenant": tenant, "hour__gte": span.first_hour, "hour__lt": span.end}
    field = "day" if group == "day" else group
    annotate = {"day": TruncDate("hour", tzinfo=UTC)} if group == "day" else {}

    counts = defaultdict(Counter)
    totals = Counter()
    grouped = DeliveryCount.objects.filter(**window).annotate(**annotate)
    if group == "status":
        rows = ((status, status, n) for status, n in grouped.values_list("status").annotate(Sum("n")).order_by())
    else:
        rows = grouped.values_list(field, "status").annotate(Sum("n")).order_by()
    for key, status, n in rows:
        counts[key][status] += n
        totals[status] += n
    histograms = defaultdict(lambda: defaultdict(Counter))
    overall = defaultdict(Counter)
    if group != "status":
        latency = DeliveryLatency.objects.filter(**window).annotate(**annotate)
        for key, stage, bucket, n in latency.values_list(field, "stage", "bucket").annotate(Sum("n")).order_by():
            histograms[key][stage][bucket] += n
            overall[stage][bucket] += n
    else:
        for stage, bucket, n in (
            DeliveryLatency.objects.filter(**window).values_list("stage", "bucket").annotate(Sum("n")).order_by()
        ):
            overall[stage][bucket] += n

    def label(key):
        # No category or provider ("" in the aggregates: a unique key cannot hold NULL) is null.
        return key.isoformat() if isinstance(key, date) else key or None

    groups = [
        {"key": label(key), **summary(counts[key], None if group == "status" else histograms.get(key, {}))}
        for key in sorted(set(counts) | set(histograms), key=lambda k: str(k))
    ]
    return {
        "from": span.start.isoformat(),
        "to": span.end.isoformat(),
        "group_by": group,
        "total": summary(totals, overall),
        "groups": groups,
    }
