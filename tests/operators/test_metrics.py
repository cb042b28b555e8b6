"""GET /metrics: Prometheus text, behind a bearer token, summed across processes (multiprocess
mode), with scrape-time queue depths and due-but-unsent messages."""

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from alertflow.management.commands.run import Addresses, process_commands
from bench.processes import free_port, port_open, wait_for
from delivery.pipeline import deliver
from notifications.models import Message, Notification
from tests.factories import RecipientFactory, TenantFactory, api_key
from tests.fakes.fixtures import *  # noqa: F403
from tests.notifications.conftest import EMAIL
from tests.pipeline.conftest import add_provider, smtp_config

TOKEN = "scrape-secret-0123456789"
INAPP = {"inapp": {"title": "Hi", "body": "Code {{ code }}"}}


@pytest.fixture
def token(settings):
    settings.ALERTFLOW_METRICS_TOKEN = TOKEN
    return TOKEN


def samples(text: str) -> dict:
    """{(sample name, frozenset(labels)): value} of a scrape."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    return samples(response.content.decode())


def test_metrics_do_not_exist_without_a_token_setting(client, settings):
    settings.ALERTFLOW_METRICS_TOKEN = ""

    response = client.get("/metrics")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
def test_metrics_refuse_a_missing_or_wrong_token(client, token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}

    response = client.get("/metrics", **extra)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_a_scrape_reads_queue_depths_and_due_unsent_messages(client, token, tenant):
    notification = Notification.objects.create(tenant=tenant, channels=["email"])
    now = timezone.now()

    def message(status, **fields):
        return Message.objects.create(
            tenant=tenant, notification=notification, recipient=RecipientFactory(tenant=tenant), channel="email",
            status=status, **fields,
        )  # fmt: skip

    message("queued", updated=now - timedelta(minutes=10))
    message("queued", updated=now - timedelta(minutes=1))
    message("retrying", next_attempt=now - timedelta(seconds=90))
    message("scheduled", next_attempt=now + timedelta(hours=1))  # not due yet

    found = scrape(client)

    assert found[("alertflow_due_unsent_messages", frozenset({("status", "queued")}))] == 2
    assert found[("alertflow_due_unsent_messages", frozenset({("status", "retrying")}))] == 1
    assert found[("alertflow_due_unsent_messages", frozenset({("status", "scheduled")}))] == 0
    assert 600 <= found[("alertflow_due_unsent_oldest_seconds", frozenset({("status", "queued")}))] < 700
    assert 90 <= found[("alertflow_due_unsent_oldest_seconds", frozenset({("status", "retrying")}))] < 190
    assert ("alertflow_queue_depth", frozenset({("queue", "email")})) in found
    assert found[("alertflow_broker_up", frozenset())] == 1


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.django_db
def test_a_delivery_moves_the_counters_and_the_histograms(
    admin, tenant, smtp_server, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.VAR_DIR = tmp_path
    RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com")
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    before = {
        "queued": value("alertflow_messages_total", channel="email", status="queued"),
        "sending": value("alertflow_messages_total", channel="email", status="sending"),
        "sent": value("alertflow_messages_total", channel="email", status="sent"),
        "latency": value("alertflow_accept_to_sent_seconds_count", channel="email"),
        "calls": value("alertflow_provider_call_seconds_count", kind="smtp", outcome="sent"),
    }

    # Counted when the writes commit (the test's transaction never does: run what it would).
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            "/api/v1/notifications", {"recipient": "ada", "channels": ["email"], "content": EMAIL}, format="json"
        )
        assert response.status_code == 202
        deliver([m["id"] for m in response.json()["messages"]])

    assert value("alertflow_messages_total", channel="email", status="queued") == before["queued"] + 1
    assert value("alertflow_messages_total", channel="email", status="sending") == before["sending"] + 1
    assert value("alertflow_messages_total", channel="email", status="sent") == before["sent"] + 1
    assert value("alertflow_accept_to_sent_seconds_count", channel="email") == before["latency"] + 1
    assert value("alertflow_provider_call_seconds_count", kind="smtp", outcome="sent") == before["calls"] + 1


@pytest.mark.django_db
def test_a_failed_provider_call_counts_as_the_providers_error(admin, tenant, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.ALERTFLOW_ALLOW_PRIVATE_NETWORKS = True
    RecipientFactory(tenant=tenant, external_id="ada", email="ada@example.com")
    # Nothing listens there: a connection refused is the provider's fault (transient).
    add_provider(tenant, "email", "smtp", {"host": "127.0.0.1", "port": free_port(), "from_email": "a@acme.test"})
    before = value("alertflow_provider_errors_total", kind="smtp", fault="provider")

    response = admin.post(
        "/api/v1/notifications", {"recipient": "ada", "channels": ["email"], "content": EMAIL}, format="json"
    )
    deliver([m["id"] for m in response.json()["messages"]])

    assert value("alertflow_provider_errors_total", kind="smtp", fault="provider") == before + 1


def answers(port: int) -> bool:
    """Whether the server's worker answers. gunicorn's master opens the port before its worker
    has loaded Django, so an open port alone let the first request wait past httpx's 5 s default
    timeout on a loaded machine."""
    if not port_open(port):
        return False
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def two_web_processes(django_db_setup, django_db_blocker, tmp_path):
    """Two gunicorn servers on the test database sharing one multiprocess directory, as two
    web nodes of one host would; yields their ports and the directory."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    with django_db_blocker.unblock():
        db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DB_CONN_MAX_AGE": "0",  # no connection outlives its request to hold the test database
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "ALERTFLOW_METRICS_TOKEN": TOKEN,
    }
    processes, ports = [], []
    try:
        for _ in range(2):
            port = free_port()
            web = process_commands(Path(sys.executable).parent, Addresses("127.0.0.1", port, port + 1), cpus=1)["web"]
            log = (tmp_path / f"gunicorn-{port}.log").open("wb")
            processes.append(
                subprocess.Popen(web, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            ports.append(port)
        for port in ports:
            if not wait_for(lambda port=port: answers(port), 120):
                logs = "".join(p.read_text()[-1000:] for p in tmp_path.glob("gunicorn-*.log"))
                pytest.fail("gunicorn did not start: " + logs)
        yield ports, metrics_dir
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_metrics_sum_the_traffic_of_two_processes(two_web_processes, transactional_db):
    (first, second), metrics_dir = two_web_processes
    tenant = TenantFactory()
    _, secret = api_key(tenant)
    RecipientFactory(tenant=tenant, external_id="ada")
    body = {"recipient": "ada", "channels": ["inapp"], "content": INAPP, "data": {"code": "1"}}

    def scraped(port) -> float:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        return samples(response.text).get(
            ("alertflow_messages_total", frozenset({("channel", "inapp"), ("status", "queued")})), 0
        )

    before = scraped(first)
    for port, sends in ((first, 3), (second, 2)):
        for _ in range(sends):
            response = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/notifications", json=body, headers={"X-API-Key": secret}, timeout=10
            )
            assert response.status_code == 202, response.text

    # Either process answers for both: the counter files of two processes, summed.
    assert scraped(first) == before + 5
    assert scraped(second) == before + 5
    writers = {path.stem.rsplit("-", 1)[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(writers) >= 2


@pytest.mark.django_db
def test_requests_are_counted_by_route_and_status(admin, client, token):
    labels = {"route": "api/v1/notifications", "method": "POST"}
    before = value("alertflow_http_requests_total", code="400", **labels)

    assert admin.post("/api/v1/notifications", {}, format="json").status_code == 400

    assert value("alertflow_http_requests_total", code="400", **labels) == before + 1
    found = scrape(client)
    assert found[("alertflow_http_requests_total", frozenset({**labels, "code": "400"}.items()))] >= 1
