"""Monthly usage per channel and its quotas, charged when a send is accepted.

A send costs one per recipient per requested channel, charged in the accept transaction: a
bulk send is refused whole or accepted whole. The charge is one upsert per channel of the
month's counter row, `INSERT ... ON CONFLICT DO UPDATE SET used = used + n WHERE used + n <=
limit` (the limit read in the same statement; the month's first send creates the row), so
concurrent sends queue on the row lock and never overshoot together; the transaction's rollback
takes the charge back with everything else. Accept charges last, just before its commit, so the
row lock is held for as short as can be, in the one statement of its writes (`Charge`).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache

from django.db import connection
from django.utils import timezone

from alertflow.channels import CHANNELS
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
        statements = []
        for channel, cost in charged:
            limit = [tenant_id, channel, UNLIMITED]
            statements.append((_add_sql(), [tenant_id, month, channel, cost, cost, *limit, *limit]))
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
            used = Usage.objects.filter(tenant=self.tenant, period=self.period, channel=channel).values_list(
                "used", flat=True
            )
            over[channel] = {"limit": limit.first(), "used": used.first() or 0, "requested": cost}
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


# The bound of a channel without a Quota row: above any monthly limit one can hold.
UNLIMITED = 2**62


@cache
def _add_sql() -> str:
    """One statement that raises the month's counter by a cost if it stays within the channel's
    quota (or UNLIMITED), creating the row on the month's first send: `INSERT ... SELECT ...
    WHERE cost <= limit ON CONFLICT DO UPDATE SET used = used + cost WHERE used + cost <= limit`.
    Its row count is 1 if the cost went in, 0 if it would go over: one statement whatever the
    month's state, so a charge never needs a second one (which, sent after the later channels'
    rows were locked, could deadlock two sends at a quota's edge). Written once per process in
    raw SQL because the ORM's query building cost more CPU than the statement; the same on
    PostgreSQL and SQLite."""
    quote = connection.ops.quote_name

    def column(model, name: str) -> str:
        return quote(model._meta.get_field(name).column)

    table, used = quote(Usage._meta.db_table), column(Usage, "used")
    key = ", ".join(column(Usage, name) for name in ("tenant", "period", "channel"))
    limit = (
        f"COALESCE((SELECT {column(Quota, 'monthly_limit')} FROM {quote(Quota._meta.db_table)} "  # noqa: S608 (names from the models)
        f"WHERE {column(Quota, 'tenant')} = %s AND {column(Quota, 'channel')} = %s), %s)"
    )
    return (
        f"INSERT INTO {table} ({key}, {used}) SELECT %s, %s, %s, %s WHERE %s <= {limit} "
        f"ON CONFLICT ({key}) DO UPDATE SET {used} = {table}.{used} + excluded.{used} "
        f"WHERE {table}.{used} + excluded.{used} <= {limit}"
    )


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
