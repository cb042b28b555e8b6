"""A task stopped from outside (its soft time limit, a worker's shutdown) is not a failed send:
what its batch held goes back to `retrying`, never to the dead letters."""

import signal
import threading

import pytest
from celery.exceptions import SoftTimeLimitExceeded, WorkerShutdown
from django.utils import timezone

from delivery import pipeline
from notifications.models import Message
from templates_app.sandbox import RenderBudget
from tests.factories import RecipientFactory

from .conftest import accept, add_provider, smtp_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def interrupt_when():
    """Raise an exception in this thread once an event is set, from a signal handler: how billiard
    delivers a task's soft time limit (SIGUSR1) and how a shutdown reaches a running task. Waiting
    for the event, not for a delay, keeps the moment right however loaded the machine is."""
    previous = signal.getsignal(signal.SIGALRM)
    target = threading.get_ident()
    watchers = []

    def arm(exception: type[BaseException], event: threading.Event) -> None:
        def interrupt(signum, frame):
            raise exception()

        def watch():
            if event.wait(timeout=60):
                signal.pthread_kill(target, signal.SIGALRM)

        signal.signal(signal.SIGALRM, interrupt)
        watchers.append(threading.Thread(target=watch, daemon=True))
        watchers[-1].start()

    yield arm
    for watcher in watchers:
        watcher.join(timeout=60)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("interruption", [SoftTimeLimitExceeded, WorkerShutdown])
def test_an_interrupted_batch_goes_back_to_retrying(admin, tenant, smtp_server, interrupt_when, interruption):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    ids = []
    for n in range(3):
        RecipientFactory(tenant=tenant, external_id=f"u{n}", email=f"u{n}@example.com")
        ids += [m.id for m in accept(admin, ["email"], recipient=f"u{n}")]
    # The first is sent, the second hangs in the provider's hands, the third is never tried.
    # The interruption comes while the second is held.
    smtp_server.stall_next(0)
    smtp_server.stall_next(30)
    interrupt_when(interruption, smtp_server.stalling)

    with pytest.raises(interruption):
        pipeline.deliver(ids)

    first, second, third = (Message.objects.get(pk=i) for i in ids)
    assert first.status == "sent"
    assert (second.status, second.reason, second.attempts) == ("retrying", "interrupted", 1)
    assert second.error.startswith(f"interrupted: {interruption.__name__}")
    assert (third.status, third.reason, third.attempts) == ("retrying", "interrupted", 0)
    assert third.next_attempt <= timezone.now()  # due again at once: it was never tried
    assert len(smtp_server.messages) == 1
    assert not Message.objects.filter(status="failed").exists()


def test_a_render_interrupted_by_the_time_limit_is_not_a_render_failure(
    admin, ada, interrupt_when, settings, monkeypatch
):
    # A render long enough for the limit to land inside the template engine, not around it.
    settings.ALERTFLOW_RENDER_MAX_LOOP_ITERATIONS = 10**9
    settings.ALERTFLOW_RENDER_MAX_SECONDS = 60
    slow = "{% for a in s %}{% for b in s %}{% for c in s %}{{ c }}{% endfor %}{% endfor %}{% endfor %}"
    body = {"recipient": "ada", "channels": ["sms"], "content": {"sms": {"text": slow}}, "data": {"s": "x" * 300}}
    response = admin.post("/api/v1/notifications", body, format="json")
    [message] = Message.objects.filter(notification_id=response.json()["id"])
    # The limit lands once the template engine is looping, however slow the machine is.
    looping = threading.Event()
    spend_iterations = RenderBudget.spend_iterations

    def spend_and_signal(budget, count):
        looping.set()
        spend_iterations(budget, count)

    monkeypatch.setattr(RenderBudget, "spend_iterations", spend_and_signal)
    interrupt_when(SoftTimeLimitExceeded, looping)

    with pytest.raises(SoftTimeLimitExceeded):
        pipeline.deliver([message.id])

    message.refresh_from_db()
    assert (message.status, message.reason) == ("retrying", "interrupted")
