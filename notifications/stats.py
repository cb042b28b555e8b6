"""Counting messages as they move: the Prometheus counters of alertflow/metrics.py.

Accept and the fan-out report the messages they write (`written`); every later status write is
heard through the transition seam (`moved`, a `notifications.transitions` listener). Counters
move only once the transaction that wrote the statuses commits: a rolled-back accept counts
nothing.
"""

from collections import Counter
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from alertflow import metrics

from . import transitions
from .models import Message


def count(pairs: Iterable[tuple[str, str]]) -> None:
    """Count (channel, status) moves once the current transaction commits."""
    moves = Counter(pairs)
    if not moves:
        return

    def publish():
        for (channel, status), n in moves.items():
            metrics.MESSAGES.labels(channel, status).inc(n)

    transaction.on_commit(publish)


def written(messages: list[Message]) -> None:
    """Messages just inserted (accept, a fan-out chunk), each in its first status."""
    count((m.channel, m.status) for m in messages)


def moved(status: str, rows: list[transitions.Moved]) -> None:
    """A transition listener (notifications/apps.py): count every status write's moves."""
    count((row.channel, status) for row in rows)


def observe_sent(latencies: list[tuple[str, float]]) -> None:
    """(channel, seconds from acceptance) of messages just sent, observed once the write commits
    (measured by notifications/analytics.py, which reads what the moved rows lack)."""
    if not latencies:
        return

    def publish():
        for channel, seconds in latencies:
            metrics.ACCEPT_TO_SENT.labels(channel).observe(seconds)

    transaction.on_commit(publish)


# A scrape counts at most this many due messages: the number says "a backlog" well before it,
# and counting a huge one would make every scrape as slow as the backlog is long.
DUE_COUNT_CAP = 100_000


def collect_due_unsent() -> list:
    """Scrape-time gauges (alertflow/metrics.py): messages whose time to be sent has come and
    that no worker has sent yet, and how long the oldest has waited.

    `queued` messages are due since they were queued (`updated`; partial index
    `message_in_flight`), scheduled and retrying ones since `next_attempt` (partial index
    `message_due`): each query reads one index, never the message table.
    """
    now = timezone.now()
    count_family = GaugeMetricFamily(
        "alertflow_due_unsent_messages",
        f"Messages due to be sent and not sent yet, by status (counted up to {DUE_COUNT_CAP}).",
        labels=["status"],
    )
    age_family = GaugeMetricFamily(
        "alertflow_due_unsent_oldest_seconds",
        "Seconds the oldest due and unsent message has waited, by status (0 when none).",
        labels=["status"],
    )
    waiting = {
        Message.Status.QUEUED: (Message.objects.filter(status=Message.Status.QUEUED), "updated"),
        Message.Status.SCHEDULED: (
            Message.objects.filter(status=Message.Status.SCHEDULED, next_attempt__lte=now),
            "next_attempt",
        ),
        Message.Status.RETRYING: (
            Message.objects.filter(status=Message.Status.RETRYING, next_attempt__lte=now),
            "next_attempt",
        ),
    }
    for status, (due, since) in waiting.items():
        count_family.add_metric([status], due.values("pk")[:DUE_COUNT_CAP].count())
        oldest = due.aggregate(oldest=Min(since))["oldest"]
        age_family.add_metric([status], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    return [count_family, age_family]
