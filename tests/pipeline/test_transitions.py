"""The transition seam (notifications/transitions.py): every status write tells the listeners
which rows it moved, inside its own transaction, on PostgreSQL and on SQLite."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from delivery import state
from notifications import transitions
from notifications.models import Message

from .conftest import accept

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


@pytest.fixture
def heard():
    calls = []

    def listener(status, rows):
        calls.append((status, rows))

    transitions.listen(listener)
    yield calls
    transitions.forget(listener)


def test_a_move_hands_the_listener_the_rows_it_moved_as_they_are_now(admin, ada, heard):
    email, sms = accept(admin, ["email", "sms"])
    Message.objects.filter(pk=sms.pk).update(status="sent")
    now = timezone.now()

    moved = Message.objects.filter(pk__in=[email.pk, sms.pk]).move("cancelled", reason="by_test", updated=now)

    assert moved == 1  # the sent one may not be cancelled
    [(status, [row])] = heard
    assert status == "cancelled"
    assert row == transitions.Moved(
        id=email.id,
        tenant_id=email.tenant_id,
        notification_id=email.notification_id,
        recipient_id=email.recipient_id,
        channel="email",
        status="cancelled",
        reason="by_test",
        updated=now,
        sent=None,
        delivered=None,
        read=None,
        failed=None,
    )


def test_a_move_that_matches_nothing_tells_nobody(admin, ada, heard):
    [email] = accept(admin, ["email"])

    assert Message.objects.filter(pk=email.pk).move("delivered") == 0

    assert heard == []


def test_a_listener_that_raises_undoes_the_move(admin, ada):
    [email] = accept(admin, ["email"])

    def refuse(status, rows):
        raise RuntimeError("the outbox is full")

    transitions.listen(refuse)
    try:
        with pytest.raises(RuntimeError):
            Message.objects.filter(pk=email.pk).move("cancelled")
    finally:
        transitions.forget(refuse)

    assert Message.objects.get(pk=email.pk).status == "queued"


def test_the_claim_tells_of_what_it_expired_and_the_record_of_what_it_settled(admin, ada, heard):
    email, sms = accept(admin, ["email", "sms"])
    Message.objects.filter(pk=sms.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    lease = state.claim([email.pk, sms.pk])

    [(claim_status, [claimed_row]), (status, [row])] = heard
    assert (claim_status, claimed_row.id) == ("sending", email.id)
    assert (status, row.id, row.reason, row.channel) == ("expired", sms.id, state.EXPIRED_IN_QUEUE, "sms")
    assert row.updated is not None and row.tenant_id == sms.tenant_id

    heard.clear()
    [claimed] = Message.objects.filter(pk__in=lease.ids)
    state.settle(claimed, state.Outcome(sent=True, provider="p", provider_message_id="x"))
    state.record([claimed], [], lease)

    [(status, [row])] = heard
    assert (status, row.id, row.sent) == ("sent", email.id, claimed.sent)


def test_the_listener_runs_in_the_writers_transaction(admin, ada):
    [email] = accept(admin, ["email"])
    inside = []

    def listener(status, rows):
        inside.append(transaction.get_connection().in_atomic_block)

    transitions.listen(listener)
    try:
        Message.objects.filter(pk=email.pk).move("cancelled")
    finally:
        transitions.forget(listener)

    assert inside == [True]


def test_a_move_of_no_rows_with_a_listener_moves_nothing_like_without_one(heard):
    """An empty id list or `none()` is an UPDATE that cannot match: 0, as `update()` answers."""
    assert Message.objects.filter(pk__in=[]).move("cancelled") == 0
    assert Message.objects.none().move("cancelled", expected=0) == 0

    assert heard == []
