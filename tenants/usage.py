"""Monthly usage per channel and its quotas, charged when a send is accepted.

A send costs one per recipient per requested channel, charged in the accept transaction before
anything is written: a bulk send is refused whole or accepted whole. The charge is one
`UPDATE ... SET used = used + n WHERE used + n <= limit` per channel on the month's counter row,
so concurrent sends queue on the row lock and never overshoot together; the transaction's
rollback takes the charge back with everything else.
"""

from datetime import UTC, date, datetime, time, timedelta

from django.db.models import F
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
    naming every channel that would go over. Call inside the accept transaction."""
    now = timezone.now()
    period = period_start(now)
    limits = dict(Quota.objects.filter(tenant=tenant, channel__in=costs).values_list("channel", "monthly_limit"))
    over = {}
    # Sorted: concurrent sends lock their counter rows in one order, so they never deadlock.
    for channel in sorted(costs):
        cost = costs[channel]
        if cost <= 0:
            continue
        Usage.objects.bulk_create([Usage(tenant=tenant, channel=channel, period=period)], ignore_conflicts=True)
        counter = Usage.objects.filter(tenant=tenant, period=period, channel=channel)
        limit = limits.get(channel)
        if limit is not None:
            counter = counter.filter(used__lte=limit - cost)
        if not counter.update(used=F("used") + cost):
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
