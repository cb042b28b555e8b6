"""The operator's dashboard in the admin: messages per channel and status over the last 24 hours,
as an inline SVG chart (no script, no CDN), and how many tasks wait on each queue.

The counts are the analytics aggregates (notifications/analytics.py: messages entering each status
per hour), so the page costs the same with a billion messages as with ten."""

from datetime import timedelta

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils import timezone

from alertflow.broker import queue_depths
from alertflow.channels import CHANNELS

from . import analytics
from .models import Message

WINDOW = timedelta(hours=24)
# One colour per counted status, grouped by meaning: greens delivered, greys stopped, reds failed.
STATUS_COLOURS = {
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


def chart_rows(counts: dict[str, dict[str, int]]) -> list[dict]:
    """One bar per channel, its segments by status, scaled to the busiest channel; its total is
    the messages accepted (a message counts in every status it entered, so segments may add up
    to more)."""
    busiest = max((sum(statuses.get(s, 0) for s in STATUS_COLOURS) for statuses in counts.values()), default=0)
    rows = []
    for index, channel in enumerate(CHANNELS):
        statuses = counts.get(channel, {})
        total = statuses.get(analytics.ACCEPTED, 0)
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
    since = analytics.hour_of(now - WINDOW)
    counts = analytics.counts_since(since)
    rows = chart_rows(counts)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "since": since,
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
