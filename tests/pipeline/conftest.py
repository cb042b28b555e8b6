import contextlib
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

import kombu.pools
import pytest
import redis
from celery.contrib.testing.worker import TestWorkController, start_worker
from django.conf import settings
from django.db import connection, connections

from alertflow.management.commands.run import find_redis_server
from config.celery import app
from delivery.models import Provider
from delivery.providers import clear_cache
from notifications import queue, relay
from notifications.models import Message
from tests.factories import RecipientFactory
from tests.fakes.fixtures import *  # noqa: F403

CONTENT = {
    "email": {"subject": "Hello {{ recipient.name }}", "text": "Code {{ code }}", "html": "<b>{{ code }}</b>"},
    "sms": {"text": "Code {{ code }}"},
    "push": {"title": "Hi", "body": "Code {{ code }}"},
    "inapp": {"title": "Hi", "body": "Code {{ code }}"},
}


@pytest.fixture(autouse=True)
def fresh_provider_cache(settings, tmp_path):
    """Providers are cached per process; console sinks write under a VAR_DIR of the test's own."""
    settings.VAR_DIR = tmp_path
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def ada(tenant):
    return RecipientFactory(tenant=tenant, external_id="ada", name="Ada", email="ada@example.com", phone="+14155552671")


def add_provider(tenant, channel, kind, config, *, name=None, priority=0) -> Provider:
    provider = Provider(tenant=tenant, channel=channel, kind=kind, name=name or f"{kind}-{priority}", priority=priority)
    provider.set_config(config)
    provider.save()
    return provider


def smtp_config(server) -> dict:
    return {"host": server.host, "port": server.port, "from_email": "noreply@acme.test", "timeout": 2}


def accept(client, channels, recipient="ada", **extra) -> list[Message]:
    """Accept a send through the API and return its messages (not yet delivered)."""
    body = {"recipient": recipient, "channels": channels, "content": CONTENT, "data": {"code": "4711"}, **extra}
    response = client.post("/api/v1/notifications", body, format="json")
    assert response.status_code == 202, response.content
    return list(Message.objects.filter(notification_id=response.json()["id"]).order_by("channel"))


class RelayWarnings(logging.Handler):
    """What the relay logged (its failed rounds), to show when it does not stop."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


# How long a relay may take to stop. It sees the stop between two steps (within the LISTEN poll,
# 1 s; a stop takes 0.7-0.9 s here), but a step it is in finishes first: a broker command may
# take queue.BROKER_TIMEOUT_SECONDS (5 s) to fail, and on SQLite a write may wait for the lock up
# to the busy timeout (30 s, config/settings.py). The 10 s this was fell short of the latter.
RELAY_STOP_SECONDS = 30


@contextlib.contextmanager
def running_relay(stopping_within: float = RELAY_STOP_SECONDS):
    """The outbox relay as production runs it (`manage.py relay`: LISTEN/NOTIFY on PostgreSQL),
    in a thread with its own database connection, for tests whose transactions really commit."""
    stop = threading.Event()
    failures = []
    warnings = RelayWarnings()

    def serve():
        try:
            relay.serve(stop.is_set)
        except BaseException as exc:  # the test must see it, not a silent thread
            failures.append(exc)
        finally:
            connection.close()

    relay.logger.addHandler(warnings)
    thread = threading.Thread(target=serve, name="relay", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(stopping_within)
        relay.logger.removeHandler(warnings)
    stack = "".join(traceback.format_stack(sys._current_frames().get(thread.ident)))
    assert not thread.is_alive(), f"the relay did not stop, stuck in:\n{stack}\nafter: {warnings.lines}"
    assert not failures, failures


class ClosingWorkController(TestWorkController):
    """A test worker that closes its thread's database connections when it stops: the thread
    runs the tasks (solo pool) on connections of its own, which start_worker left open, so the
    test database could not be dropped at the end of the run ("being accessed by other users")."""

    def start(self):
        try:
            super().start()
        finally:
            connections.close_all()  # in the worker's thread: its own connections


@contextlib.contextmanager
def running_worker():
    """A real Celery worker in a thread (solo pool), for tests whose transactions commit."""
    with start_worker(
        app, pool="solo", perform_ping_check=False, shutdown_timeout=10, WorkController=ClosingWorkController
    ) as worker:
        yield worker


def switch_broker(url: str) -> None:
    """Point the Celery app, and the relay's own connection, at another broker."""
    app.conf.broker_url = app.conf.broker_write_url = url
    app.pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()  # kombu keeps producer pools per connection, closed ones included
    queue.RelayBroker.forget()


class OwnRedis:
    """A redis-server of the test's own on a unix socket (no port to share), which the test may
    stop, start again (empty) or freeze: a frozen server keeps accepting connections and never
    answers, as a hung Redis or a half-open connection does. With `tcp`, on a free port of
    127.0.0.1 instead (`port`): kombu reads a `redis+socket://` URL with its stock transport."""

    def __init__(self, directory, tcp: bool = False):
        self.path = self.port = None
        if tcp:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            listen = ["--port", str(self.port), "--bind", "127.0.0.1"]
            self.client = redis.Redis(port=self.port, socket_timeout=5)
        else:
            self.path = str(directory / "redis.sock")
            listen = ["--port", "0", "--unixsocket", self.path]
            self.client = redis.Redis(unix_socket_path=self.path, socket_timeout=5)
        self.argv = [find_redis_server(), *listen, "--save", "", "--appendonly", "no"]
        self.argv += ["--dir", str(directory), "--loglevel", "warning"]
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def own_broker(tmp_path_factory):
    """The Celery app and the relay on an OwnRedis, started; back on the test broker after."""
    server = OwnRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    switch_broker(f"redis+socket://{server.path}")
    try:
        yield server
    finally:
        switch_broker(settings.CELERY_BROKER_URL)
        server.thaw()
        server.process.kill()
        server.process.wait(10)
