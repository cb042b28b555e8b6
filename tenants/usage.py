"""Monthly usage per channel and its quotas, charged when a send is accepted.

A send costs one per recipient per requested channel, charged in the accept transaction: a
bulk send is refused whole or accepted whole. The charge is one upsert per channel of the
month's counter, `INSERT ... ON CONFLICT DO UPDATE SET used = used + n WHERE used + n <= limit`
(the limit read in the same statement; the month's first send creates the row), so concurrent
sends of a channel with a quota queue on its row lock and never overshoot together; a channel
without one is counted in shards that concurrent sends do not queue on (`_add_sql`). The
transaction's rollback takes the charge back with everything else. Accept charges last, just
before its commit, so the row lock is held for as short as can be, in the one statement of its
writes (`Charge`).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache

from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from alertflow.channels import CHANNELS
from alertflow.counters import shard_sql
from alertflow.errors import ApiError
from alertflow.together import Statement, run_together

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
    pending = Charge.of(tenant, costs)
    pending.settle(run_together(pending.statements))


@dataclass(frozen=True)
class Charge:
    """A charge's statements, one upsert per channel (sorted: concurrent sends lock their
    counter rows in one order, so they never deadlock), for a caller that runs them with its
    other writes (`run_together`) and then `settle`s it with their row counts."""

    tenant: Tenant
    now: datetime
    period: date
    costs: list[tuple[str, int]]  # (channel, cost), in the statements' order
    statements: list[Statement]

    @classmethod
    def of(cls, tenant: Tenant, costs: dict[str, int]) -> "Charge":
        now = timezone.now()
        period = period_start(now)
        # As the columns store them: a UUID on PostgreSQL, its hex on SQLite (`make run`).
        tenant_id = Usage._meta.get_field("tenant").get_db_prep_value(tenant.pk, connection)
        month = connection.ops.adapt_datefield_value(period)
        charged = [(channel, costs[channel]) for channel in sorted(costs) if costs[channel] > 0]
        statements = [_add_statement(tenant_id, month, channel, cost) for channel, cost in charged]
        return cls(tenant, now, period, charged, statements)

    def settle(self, counts: list[int]) -> None:
        """Raise 429 `quota_exceeded` naming every channel whose counter did not take its cost
        (`counts`: the statements' row counts; the caller's transaction then rolls back the
        others' with everything else)."""
        over = {}
        for (channel, cost), count in zip(self.costs, counts, strict=True):
            if count == 1:
                continue
            # The upsert adds within the quota or not at all: a counter that did not take the
            # cost is over the limit, whether its row was there (locked now) or not.
            limit = Quota.objects.filter(tenant=self.tenant, channel=channel).values_list("monthly_limit", flat=True)
            used = Usage.objects.filter(tenant=self.tenant, period=self.period, channel=channel).aggregate(
                used=Sum("used")
            )["used"]
            over[channel] = {"limit": limit.first(), "used": used or 0, "requested": cost}
        if over:
            resets = datetime.combine(next_period_start(self.period), time.min, tzinfo=UTC)
            error = ApiError(
                429,
                "quota_exceeded",
                f"This send would exceed the monthly quota of: {', '.join(sorted(over))}.",
                {"channels": over, "resets_at": resets.isoformat()},
            )
            # DRF turns `wait` into the Retry-After header: the quota resets with the month.
            error.wait = max(1, int((resets - self.now).total_seconds()))
            raise error


@cache
def _add_sql() -> str:
    """One statement that raises the month's counter by a cost if it stays within the channel's
    quota, creating the row on the month's first send; its row count is 1 if the cost went in,
    0 if it would go over. One statement whatever the month's state, so a charge never needs a
    second one (which, sent after the later channels' rows were locked, could deadlock two sends
    at a quota's edge).

    A channel with a quota raises shard 0, the one row every send of it queues on, `WHERE used
    + cost + <the other shards> <= limit`: concurrent sends never overshoot together. A channel
    without one raises the connection's own shard (alertflow/counters.py) unchecked, so the
    tenant's sends do not queue on one row. Once a quota is set, its check counts what the other
    shards took before. A send whose statement started before the quota's commit charges as
    unlimited, as it would with a single row.

    Written once per process in raw SQL because the ORM's query building cost more CPU than the
    statement; the same on PostgreSQL and SQLite (`INSERT ... SELECT ... WHERE` before `ON
    CONFLICT`, which SQLite needs to parse it)."""
    quote = connection.ops.quote_name

    def column(model, name: str) -> str:
        return quote(model._meta.get_field(name).column)

    table, used, shard = quote(Usage._meta.db_table), column(Usage, "used"), column(Usage, "shard")
    tenant, period, channel = (column(Usage, name) for name in ("tenant", "period", "channel"))
    key = f"{tenant}, {period}, {channel}, {shard}"
    limit = (
        f"(SELECT {column(Quota, 'monthly_limit')} FROM {quote(Quota._meta.db_table)} "  # noqa: S608 (names from the models)
        f"WHERE {column(Quota, 'tenant')} = %s AND {column(Quota, 'channel')} = %s)"
    )

    def taken(other_shards: bool) -> str:
        where = f"o.{tenant} = %s AND o.{period} = %s AND o.{channel} = %s"
        where += f" AND o.{shard} <> 0" if other_shards else ""
        return f"(SELECT COALESCE(SUM(o.{used}), 0) FROM {table} AS o WHERE {where})"  # noqa: S608

    return (
        f"INSERT INTO {table} ({key}, {used}) "  # noqa: S608
        f"SELECT %s, %s, %s, CASE WHEN q.quota IS NULL THEN {shard_sql(connection)} ELSE 0 END, %s "
        f"FROM (SELECT {limit} AS quota) AS q "
        f"WHERE q.quota IS NULL OR %s + {taken(other_shards=False)} <= q.quota "
        f"ON CONFLICT ({key}) DO UPDATE SET {used} = {table}.{used} + excluded.{used} "
        f"WHERE excluded.{shard} <> 0 OR {table}.{used} + excluded.{used} + {taken(other_shards=True)} <= {limit}"
    )


def _add_statement(tenant_id, month, channel: str, cost: int) -> Statement:
    """`_add_sql` with its parameters, in the order of its placeholders."""
    counter = [tenant_id, month, channel]
    quota = [tenant_id, channel]
    # The row; the quota; the check without a row (every shard); with one (the other shards, the quota).
    return _add_sql(), [*counter, cost, *quota, cost, *counter, *counter, *quota]


def usage_report(tenant: Tenant) -> dict:
    """Used and left this month per channel (`limit` and `left` are null when unlimited)."""
    period = period_start()
    counters = Usage.objects.filter(tenant=tenant, period=period).values_list("channel").annotate(Sum("used"))
    used = dict(counters.order_by())
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
