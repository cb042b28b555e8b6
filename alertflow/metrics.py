"""Prometheus metrics and `GET /metrics`, correct across every web, ws and worker process.

prometheus-client's multiprocess mode (alertflow/multiproc.py): with `PROMETHEUS_MULTIPROC_DIR`
set, every process writes its samples to its own files there and a scrape merges them. `manage.py
run` points it at `var/prometheus/` and empties it at start-up; gunicorn's `child_exit` hook
(config/gunicorn.py) and Celery's `worker_process_shutdown` (alertflow/task_context.py) mark a
dead process's live gauges as gone. Without the variable (a test, a shell) metrics are this
process's own.

What a counter cannot hold is read at scrape time: queue depths from the broker (here) and
whatever an upper layer registers with `register_scrape_collector` (due-but-unsent messages,
notifications/apps.py), so `alertflow` never imports the apps above it.

`/metrics` answers only with `ALERTFLOW_METRICS_TOKEN` set, to `Authorization: Bearer <token>`:
unset, the endpoint does not exist (404); a missing or wrong token is a 401.
"""

import hmac
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import multiproc
from .broker import queue_depths
from .errors import error_response

multiproc.configure()

# Seconds from acceptance to the provider taking the message: from sub-second (a transactional
# send) to an hour (a campaign behind a rate cap).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Provider calls: an SMTP handshake or an HTTPS API call, up to its timeout (10 s by default).
PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# Labelled by the URL pattern, never the path: ids in paths would make a series per object.
HTTP_REQUESTS = Counter(
    "alertflow_http_requests",
    "HTTP requests answered, by URL pattern, method and status code.",
    ["route", "method", "code"],
)
MESSAGES = Counter(
    "alertflow_messages",
    "Messages entering a status (accepted messages enter their first one), by channel and status.",
    ["channel", "status"],
)
ACCEPT_TO_SENT = Histogram(
    "alertflow_accept_to_sent_seconds",
    "Seconds from acceptance (or a later requested send time) to the provider taking the message.",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_CALLS = Histogram(
    "alertflow_provider_call_seconds",
    "Duration of provider calls, by provider kind and outcome (sent, transient, permanent).",
    ["kind", "outcome"],
    buckets=PROVIDER_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "alertflow_provider_errors",
    "Provider calls that failed, by provider kind and whose fault (provider, address, content, bug).",
    ["kind", "fault"],
)
# `livesum`: the sum over processes still alive, so a crashed ws process's sockets drop out.
WEBSOCKETS = Gauge(
    "alertflow_websocket_connections",
    "Open inbox websocket connections.",
    multiprocess_mode="livesum",
)

ScrapeCollector = Callable[[], Iterable[Metric]]
_scrape_collectors: list[ScrapeCollector] = []


def register_scrape_collector(collect: ScrapeCollector) -> None:
    """Add `collect` (no arguments, returns metric families) to every scrape. For values a
    database or broker holds, read when asked rather than counted; keep it cheap."""
    if collect not in _scrape_collectors:
        _scrape_collectors.append(collect)


def collect_queue_depths() -> list[Metric]:
    depth = GaugeMetricFamily("alertflow_queue_depth", "Tasks waiting on each broker queue.", labels=["queue"])
    up = GaugeMetricFamily("alertflow_broker_up", "1 when the broker answered the queue-depth read.")
    depths = queue_depths()
    for queue, n in (depths or {}).items():
        depth.add_metric([queue], n)
    up.add_metric([], 0 if depths is None else 1)
    return [depth, up]


class _Scraped:
    """Scrape-time values as one registry collector."""

    def collect(self):
        yield from collect_queue_depths()
        for collect in _scrape_collectors:
            yield from collect()


def exposition() -> bytes:
    """Every metric in Prometheus' text format: the processes' files merged (or this process's
    own registry, without a multiprocess directory), then the scrape-time values."""
    path = multiproc.multiproc_dir()
    if path:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=path)
    else:
        merged = REGISTRY
    scraped = CollectorRegistry()
    scraped.register(_Scraped())
    return generate_latest(merged) + generate_latest(scraped)


def authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics` (Prometheus text format), for a scraper holding ALERTFLOW_METRICS_TOKEN."""
    token = settings.ALERTFLOW_METRICS_TOKEN
    if not token:
        return error_response(404, "not_found", "Not found.")
    if not authorized(request, token):
        response = error_response(401, "not_authenticated", "Send Authorization: Bearer <ALERTFLOW_METRICS_TOKEN>.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
