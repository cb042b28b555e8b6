"""Statuses move only forward, in the database: every status write names the statuses it may
leave (Message.ENTERED_FROM), and a write that matches nothing changes nothing and is logged."""

import logging

import pytest
from django.utils import timezone

from delivery import state
from notifications.models import Message

from .conftest import accept

pytestmark = pytest.mark.django_db


def reload(message) -> Message:
    return Message.objects.get(pk=message.pk)


def claimed_batch(admin, n_channels=("email", "sms")) -> tuple[state.Lease, list[Message]]:
    messages = accept(admin, list(n_channels))
    lease = state.claim([m.id for m in messages])
    return lease, list(Message.objects.filter(pk__in=[m.pk for m in messages]).order_by("channel"))


def test_a_receipt_between_send_and_record_is_not_overwritten(admin, ada, caplog):
    lease, (email, sms) = claimed_batch(admin)
    for message in (email, sms):
        state.settle(message, state.Outcome(sent=True, provider="p", provider_message_id=f"id-{message.channel}"))
    # The provider's receipt for the email arrives before the batch flushes its results.
    Message.objects.filter(pk=email.pk).update(status="delivered", delivered=timezone.now())

    with caplog.at_level(logging.INFO, logger="notifications.models"):
        state.record([email, sms], [], lease)

    assert reload(email).status == "delivered"
    assert (reload(sms).status, reload(sms).provider_message_id) == ("sent", "id-sms")
    assert "status_write_unmatched: 1 of 2 message(s)" in caplog.text


def test_a_cancel_after_the_claim_changes_nothing(admin, ada):
    _lease, [email] = claimed_batch(admin, ["email"])

    response = admin.post(f"/api/v1/notifications/{email.notification_id}/cancel")

    assert response.json()["cancelled_messages"] == 0
    assert reload(email).status == "sending"


@pytest.mark.parametrize(
    ("current", "target", "moves"),
    [
        ("sent", "queued", False),  # the due poller or a replay never resends what left
        ("delivered", "sent", False),
        ("read", "delivered", False),
        ("cancelled", "sending", False),
        ("failed", "queued", True),  # replay, asked for
        ("sent", "delivered", True),
        ("sending", "delivered", True),  # a receipt may beat the batch's record
        ("queued", "paused", True),  # a campaign run's pause takes what waits aside
        ("sending", "paused", False),  # never what a worker holds
        ("sent", "paused", False),
        ("paused", "sending", False),  # a redelivered task claims nothing while paused
        ("paused", "queued", False),  # nor does the due poller queue it
        ("paused", "expired", False),  # its wait does not count while paused
        ("paused", "cancelled", True),
        ("paused", "scheduled", True),  # the resume
    ],
)
def test_moves_follow_the_transition_table(admin, ada, current, target, moves):
    [message] = accept(admin, ["email"])
    Message.objects.filter(pk=message.pk).update(status=current)

    moved = Message.objects.filter(pk=message.pk).move(target, expected=1)

    assert moved == int(moves)
    assert reload(message).status == (target if moves else current)


def test_every_status_has_a_way_in():
    # `scheduled` is inserted by planning, and entered again only from `paused` (a resume).
    assert set(Message.ENTERED_FROM) == set(Message.Status)
