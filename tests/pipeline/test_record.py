"""`state.record` writes a batch's settled messages: several rows (an executemany) each as the
batch settled it, as one row alone is written, and only under the batch's lease."""

from datetime import timedelta

import pytest

from delivery import state, timers
from notifications.models import DeliveryAttempt, Message, Notification

from .conftest import accept

pytestmark = pytest.mark.django_db


def as_stored(message) -> dict:
    """The settled columns of the message's row."""
    return Message.objects.filter(pk=message.pk).values(*state.SETTLED_FIELDS).get()


def as_settled(message) -> dict:
    """The settled fields as the batch decided them, in memory."""
    return {name: getattr(message, name) for name in state.SETTLED_FIELDS}


def claimed(admin, sends: int) -> tuple[state.Lease, list[Message]]:
    ids = [m.id for _ in range(sends) for m in accept(admin, ["email", "sms"])]
    lease = state.claim(ids)
    return lease, list(Message.objects.filter(pk__in=ids).order_by("created", "channel"))


def settle_each_differently(messages: list) -> None:
    """Every kind of outcome, so each settled column holds values (and nulls) that differ by row."""
    outcomes = [
        state.Outcome(sent=True, provider="smtp", provider_message_id="<1@x>"),
        state.Outcome(permanent=True, provider="twilio", error="invalid number ü"),
        state.Outcome(retry_after=30, error="timeout"),
        state.Outcome(suppressed="suppressed:complaint"),
    ]
    for message, outcome in zip(messages, outcomes * len(messages), strict=False):
        message.rendered, message.to = {"subject": f"for {message.pk}"}, f"to-{message.channel}"
        state.settle(message, outcome)


def test_several_rows_are_written_as_settled_as_one_row_is(admin, ada):
    one_lease, (alone, _other) = claimed(admin, 1)
    lease, messages = claimed(admin, 2)
    settle_each_differently([alone])
    settle_each_differently(messages)

    state.record([alone], [], one_lease)
    state.record(messages, [], lease)

    assert as_stored(alone) == as_settled(alone)
    for message in messages:
        assert as_stored(message) == as_settled(message)
    assert {m.status for m in messages} == {"sent", "failed", "retrying", "suppressed"}
    assert {m.lease_until for m in messages} == {None}


def test_several_rows_under_a_lease_that_ran_out_write_nothing_over_the_next_claim(admin, ada):
    stale, messages = claimed(admin, 2)
    ids = [m.pk for m in messages]
    timers.enqueue_due(now=stale.until + timedelta(seconds=1))
    fresh = state.claim(ids)  # another worker takes them
    assert sorted(fresh.ids) == sorted(ids)

    for message in messages:
        state.settle(message, state.Outcome(permanent=True, error="from the worker taken for dead"))
    state.record(messages, [], stale)

    assert set(Message.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"sending"}


@pytest.mark.django_db(transaction=True)
def test_a_batch_some_of_whose_messages_were_deleted_meanwhile_records_the_rest(admin, ada):
    """A notification (or its whole tenant) deleted while a worker sent its messages: their
    attempts, which name them, can no longer be written. The batch's other messages and attempts
    are; before, the attempts' foreign key failed the whole record at its commit (a task error,
    nothing of the batch written)."""
    lease, messages = claimed(admin, 2)
    gone = [m for m in messages if m.notification_id == messages[0].notification_id]
    left = [m for m in messages if m not in gone]
    for message in messages:
        state.settle(message, state.Outcome(sent=True, provider="smtp", provider_message_id=f"<{message.pk}@x>"))
    attempts = [DeliveryAttempt(message_id=m.pk, provider="smtp", outcome="sent") for m in messages]
    Notification.objects.filter(pk=gone[0].notification_id).delete()

    state.record(messages, attempts, lease)

    for message in left:
        assert as_stored(message) == as_settled(message)
    assert set(DeliveryAttempt.objects.values_list("message_id", flat=True)) == {m.pk for m in left}
