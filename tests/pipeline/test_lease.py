"""A claim is a lease: renewed while its batch runs, and once it runs out (the worker died) the
due poller retries the message within seconds, not the sweeper's ten minutes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from delivery import pipeline, state, timers
from notifications.models import Message
from tests.factories import RecipientFactory

from .conftest import accept, add_provider, smtp_config

pytestmark = pytest.mark.django_db


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


def test_a_crashed_claim_is_retried_within_a_minute(admin, ada, settings, caplog):
    [message] = accept(admin, ["email"])
    claimed_at = timezone.now()
    lease = state.claim([message.id])  # ...and the worker is killed before it records anything
    # Bounded by the clock read after the claim, not a guess at how long the claim takes.
    assert lease.until <= timezone.now() + timedelta(seconds=settings.ALERTFLOW_LEASE_SECONDS)

    assert timers.enqueue_due(now=claimed_at + timedelta(seconds=5)) == 0
    assert reload(message).status == "sending"  # a live worker keeps its claim
    retried_at = lease.until + timedelta(seconds=1)
    assert retried_at - claimed_at <= timedelta(seconds=60)
    assert timers.enqueue_due(now=retried_at) == 1  # retried and queued in the same pass

    message = reload(message)
    assert (message.status, message.reason, message.lease_until) == ("queued", "lease_expired", None)
    assert "lease ran out" in caplog.text  # the possible duplicate is reported


def test_a_worker_whose_lease_ran_out_writes_nothing_over_the_next_claim(admin, ada):
    [message] = accept(admin, ["email"])
    stale = state.claim([message.id])
    timers.enqueue_due(now=stale.until + timedelta(seconds=1))
    fresh = state.claim([message.id])  # another worker takes it
    assert fresh.ids == [message.pk]

    late = Message.objects.get(pk=message.pk)
    state.settle(late, state.Outcome(permanent=True, error="from the worker that was taken for dead"))
    state.record([late], [], stale)
    assert reload(message).status == "sending"  # the stale write matched nothing

    current = Message.objects.get(pk=message.pk)
    state.settle(current, state.Outcome(sent=True, provider="p"))
    state.record([current], [], fresh)
    assert reload(message).status == "sent"


def test_a_lease_is_renewed_to_cover_a_long_provider_call(admin, ada, settings):
    [message] = accept(admin, ["email"])
    lease = state.claim([message.id])
    first = lease.until

    lease.cover(120)

    assert lease.until >= timezone.now() + timedelta(seconds=120)
    assert reload(message).lease_until == lease.until > first
    assert timers.enqueue_due(now=first + timedelta(seconds=10)) == 0
    assert reload(message).status == "sending"


def test_a_batch_longer_than_its_lease_keeps_it_and_records(admin, tenant, smtp_server, settings):
    settings.ALERTFLOW_LEASE_SECONDS = 1
    add_provider(tenant, "email", "smtp", smtp_config(smtp_server))
    ids = []
    for n in range(3):
        RecipientFactory(tenant=tenant, external_id=f"u{n}", email=f"u{n}@example.com")
        ids += [m.id for m in accept(admin, ["email"], recipient=f"u{n}")]
    for _ in ids:
        smtp_server.stall_next(0.6)  # 1.8 s in all: past the first lease

    assert pipeline.deliver(ids) == 3

    assert set(Message.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"sent"}
    assert not Message.objects.filter(pk__in=ids, lease_until__isnull=False).exists()
