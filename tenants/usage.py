"""Monthly usage per channel and its quotas, charged when a send is accepted.

A send costs one per recipient per requested channel, charged in the accept transaction: a
bulk send is refused whole or accepted whole. The charge is one
`UPDATE ... SET used = used + n WHERE used + n <= limit` per channel on the month's counter row
(the limit read in the same statement), so concurrent sends queue on the row lock and never
overshoot together; the transaction's rollback takes the charge back with everything else.
Accept charges last, just before its commit, so the row lock is held for as short as can be.
"""

from datetime import UTC, date, datetime, time, timedelta
from functools import cache

from django.db import connection
from django.utils import timezone

from alertflow.channels import CHANNELS
from alertflow.errors import ApiError

from .models import Quota, Tenant, Usage


def period_start(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(UTC).date().replace(day=1)


def next_period_start(period: date) -> date:
    return (period + timedelta(days=32)).replace(day=1)


def charge(tenant: Tenant, costs: dict[str, int]) -> None:
    """Add `costs` (messages per channel) to this month's usage, or raise 429 `quota_exceeded`
    naming every channel that would go over. Call inside the accept transaction, as late in it
    as possible: the counter rows stay locked until the commit, and every other send of the
    tenant waits for them."""
    now = timezone.now()
    period = period_start(now)
    over = {}
    # Sorted: concurrent sends lock their counter rows in one order, so they never deadlock.
    for channel in sorted(costs):
        cost = costs[channel]
        if cost <= 0:
            continue
        if _add(tenant.pk, period, channel, cost):
            continue
        # The month's first send on the channel (no counter row yet), or over the limit.
        Usage.objects.bulk_create([Usage(tenant=tenant, channel=channel, period=period)], ignore_conflicts=True)
        if not _add(tenant.pk, period, channel, cost):
            limit = Quota.objects.filter(tenant=tenant, channel=channel).values_list("monthly_limit", flat=True).first()
            used = Usage.objects.get(tenant=tenant, period=period, channel=channel).used
            over[channel] = {"limit": limit, "used": used, "requested": cost}
    if over:
        resets = datetime.combine(next_period_start(period), time.min, tzinfo=UTC)
        error = ApiError(
            429,
            "quota_exceeded",
            f"This send would exceed the monthly quota of: {', '.join(sorted(over))}.",
            {"channels": over, "resets_at": resets.isoformat()},
        )
        # DRF turns `wait` into the Retry-After header: the quota resets with the month.
        error.wait = max(1, int((resets - now).total_seconds()))
        raise error


# The bound of a channel without a Quota row: above any monthly limit one can hold.
UNLIMITED = 2**62


@cache
def _add_sql() -> str:
    """`UPDATE usage ... WHERE used + cost <= (the channel's quota, or UNLIMITED)`: written once
    per process in raw SQL because the ORM's query building cost more CPU than the statement."""
    quote = connection.ops.quote_name

    def column(model, name: str) -> str:
        return quote(model._meta.get_field(name).column)

    limit = (
        f"SELECT {column(Quota, 'monthly_limit')} FROM {quote(Quota._meta.db_table)} "  # noqa: S608 (names from the models)
        f"WHERE {column(Quota, 'tenant')} = %s AND {column(Quota, 'channel')} = %s"
    )
    used = column(Usage, "used")
    return (
        f"UPDATE {quote(Usage._meta.db_table)} SET {used} = {used} + %s "  # noqa: S608 (names from the models)
        f"WHERE {column(Usage, 'tenant')} = %s AND {column(Usage, 'period')} = %s AND {column(Usage, 'channel')} = %s "
        f"AND {used} + %s <= COALESCE(({limit}), %s)"
    )


def _add(tenant_id, period: date, channel: str, cost: int) -> bool:
    """Raise the month's counter by `cost` if it stays within the channel's quota, in one
    statement that reads the limit too (one round trip for a send). False if it would go over,
    or if the counter row does not exist yet."""
    # As the column stores it: a UUID on PostgreSQL, its hex on SQLite (`make run`).
    tenant = Usage._meta.get_field("tenant").get_db_prep_value(tenant_id, connection)
    params = [cost, tenant, connection.ops.adapt_datefield_value(period), channel, cost, tenant, channel]
    with connection.cursor() as cursor:
        cursor.execute(_add_sql(), [*params, UNLIMITED])
        return cursor.rowcount == 1


def usage_report(tenant: Tenant) -> dict:
    """Used and left this month per channel (`limit` and `left` are null when unlimited)."""
    period = period_start()
    used = dict(Usage.objects.filter(tenant=tenant, period=period).values_list("channel", "used"))
    limits = dict(Quota.objects.filter(tenant=tenant).values_list("channel", "monthly_limit"))
    channels = {}
    for channel in CHANNELS:
        limit = limits.get(channel)
        spent = used.get(channel, 0)
        channels[channel] = {"used": spent, "limit": limit, "left": None if limit is None else max(0, limit - spent)}
    return {
        "period_start": period.isoformat(),
        "period_end": next_period_start(period).isoformat(),
        "channels": channels,
    }
