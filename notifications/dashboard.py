"""The operator's dashboard in the admin: what was sent in the last 24 hours, per channel and
status, as an inline SVG chart (no script, no CDN), and how many tasks wait on each queue."""

from collections import defaultdict
from datetime import timedelta

from django.contrib import admin
from django.db.models import Count
from django.template.response import TemplateResponse
from django.utils import timezone

from alertflow.broker import queue_depths
from alertflow.channels import CHANNELS

from .models import Message

WINDOW = timedelta(hours=24)
# One colour per status, grouped by meaning: greens delivered, blues in flight, reds failed.
STATUS_COLOURS = {
    Message.Status.SCHEDULED: "#b0bec5",
    Message.Status.QUEUED: "#90caf9",
    Message.Status.SENDING: "#42a5f5",
    Message.Status.RETRYING: "#ffb74d",
    Message.Status.SENT: "#81c784",
    Message.Status.DELIVERED: "#43a047",
    Message.Status.READ: "#1b5e20",
    Message.Status.SUPPRESSED: "#9e9e9e",
    Message.Status.CANCELLED: "#616161",
    Message.Status.BOUNCED: "#e57373",
    Message.Status.COMPLAINED: "#ad1457",
    Message.Status.FAILED: "#c62828",
    Message.Status.EXPIRED: "#6d4c41",
}
CHART_WIDTH = 640
LABEL_WIDTH = 80
ROW_HEIGHT = 28
BAR_HEIGHT = 20


def counts_by_channel(since) -> dict[str, dict[str, int]]:
    counts = defaultdict(dict)
    rows = Message.objects.filter(created__gte=since).values_list("channel", "status").annotate(n=Count("id"))
    for channel, status, n in rows.order_by():
        counts[channel][status] = n
    return counts


def chart_rows(counts: dict[str, dict[str, int]]) -> list[dict]:
    """One bar per channel, its segments by status, scaled to the busiest channel."""
    busiest = max((sum(statuses.values()) for statuses in counts.values()), default=0)
    rows = []
    for index, channel in enumerate(CHANNELS):
        statuses = counts.get(channel, {})
        total = sum(statuses.values())
        x, segments = LABEL_WIDTH, []
        for status, colour in STATUS_COLOURS.items():
            n = statuses.get(status, 0)
            if not n:
                continue
            width = (CHART_WIDTH - LABEL_WIDTH) * n / busiest
            segments.append(
                {"status": status, "count": n, "x": round(x, 1), "width": round(width, 1), "colour": colour}
            )
            x += width
        rows.append(
            {
                "channel": channel,
                "total": total,
                "y": index * ROW_HEIGHT,
                "text_y": index * ROW_HEIGHT + 15,
                "segments": segments,
            }
        )
    return rows


def dashboard(request):
    now = timezone.now()
    counts = counts_by_channel(now - WINDOW)
    rows = chart_rows(counts)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "since": now - WINDOW,
        "rows": rows,
        "chart_width": CHART_WIDTH,
        "chart_height": len(rows) * ROW_HEIGHT,
        "bar_height": BAR_HEIGHT,
        "legend": [{"status": status, "colour": colour} for status, colour in STATUS_COLOURS.items()],
        "statuses": list(STATUS_COLOURS),
        "table": [
            {
                "channel": row["channel"],
                "counts": [counts.get(row["channel"], {}).get(s, 0) for s in STATUS_COLOURS],
                "total": row["total"],
            }
            for row in rows
        ],
        "queue_depths": queue_depths(),
    }
    return TemplateResponse(request, "admin/alertflow_dashboard.html", context)
