"""A task stopped from outside (its soft time limit, a worker's shutdown) is not a failed send:
what its batch held goes back to `retrying`, never to the dead letters."""

import signal

import pytest
from celery.exceptions import SoftTimeLimitExceeded, WorkerShutdown
from django.utils import timezone

from delivery import pipeline
from notifications.models import Message
from tests.factories import RecipientFactory

from .conftest import accept, add_provider, smtp_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def raise_after():
    """Raise an exception in this thread after a delay, from a signal handler: how billiard
    delivers a task's soft time limit (SIGUSR1) and how a shutdown reaches a running task."""
    previous = signal.getsignal(signal.SIGALRM)

    def arm(exception: type[BaseException], seconds: float) -> None:
        def interrupt(signum, frame):
            raise exception()

        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("interruption", [SoftTimeLimitExceeded, WorkerShutdown])
def test_an_interrupted_batch_goes_back_to_retrying(admin, tenant, smtp_server, raise_after, interruption):
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    ids = []
    for n in range(3):
        RecipientFactory(tenant=tenant, external_id=f"u{n}", email=f"u{n}@example.com")
        ids += [m.id for m in accept(admin, ["email"], recipient=f"u{n}")]
    # The first is sent, the second hangs in the provider's hands, the third is never tried.
    smtp_server.stall_next(0)
    smtp_server.stall_next(5)
    raise_after(interruption, 0.5)

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


def test_a_render_interrupted_by_the_time_limit_is_not_a_render_failure(admin, ada, raise_after, settings):
    # A render long enough for the limit to land inside the template engine, not around it.
    settings.ALERTFLOW_RENDER_MAX_LOOP_ITERATIONS = 10**9
    settings.ALERTFLOW_RENDER_MAX_SECONDS = 60
    slow = "{% for a in s %}{% for b in s %}{% for c in s %}{{ c }}{% endfor %}{% endfor %}{% endfor %}"
    body = {"recipient": "ada", "channels": ["sms"], "content": {"sms": {"text": slow}}, "data": {"s": "x" * 300}}
    response = admin.post("/api/v1/notifications", body, format="json")
    [message] = Message.objects.filter(notification_id=response.json()["id"])
    raise_after(SoftTimeLimitExceeded, 0.3)

    with pytest.raises(SoftTimeLimitExceeded):
        pipeline.deliver([message.id])

    message.refresh_from_db()
    assert (message.status, message.reason) == ("retrying", "interrupted")
