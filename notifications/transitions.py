"""Listeners to message status changes, called inside the transaction that made them.

Every status write calls `moved(status, rows)` with the rows it moved: `Message.objects.move`
(UPDATE ... RETURNING), and the two writes of delivery/state.py that bypass it for speed (the
claim's expiry at claim time, the batch record). The call happens inside the write's
transaction, so whatever a listener writes (a webhook outbox event, an analytics aggregate)
commits or rolls back with the status change: no status without its event, no event without its
status. A listener that raises rolls the status change back with it.

Higher layers register in their `AppConfig.ready()` (a lower layer never imports a higher one):

    from notifications import transitions
    transitions.listen(my_listener)

Keep listeners cheap: they run on every status write of every worker. A listener that has
nothing to do for these rows (the tenant has no webhook endpoint) should find that out without a
database query per message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import NamedTuple

# `read` is also a field name of Message (a timestamp), hence the explicit column names.
COLUMNS = (
    "id", "tenant_id", "notification_id", "recipient_id", "channel", "status", "reason",
    "updated", "sent", "delivered", "read", "failed",
)  # fmt: skip


class Facts(NamedTuple):
    """What analytics counts a moved message by, beyond its row's status columns: carried by a
    writer that holds the message in memory (the worker's batch record), so listeners need not
    read it back."""

    provider: str
    created: datetime
    send_at: datetime | None
    category: str  # the category's key, "" for none


class Moved(NamedTuple):
    """One message as a status write left it (its row after the write)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    notification_id: uuid.UUID
    recipient_id: int
    channel: str
    status: str
    reason: str
    updated: datetime | None
    sent: datetime | None
    delivered: datetime | None
    read: datetime | None
    failed: datetime | None
    # None from writers that only have the row (UPDATE ... RETURNING): listeners read them back.
    facts: Facts | None = None

    @classmethod
    def of(cls, message) -> Moved:
        """From a `Message` instance whose fields say what was just written (delivery/state.py),
        with its notification and category loaded: its `facts` come along."""
        notification = message.notification
        category = notification.category.key if notification.category_id else ""
        facts = Facts(message.provider, message.created, notification.send_at, category)
        return cls(*(getattr(message, name) for name in COLUMNS), facts=facts)


Listener = Callable[[str, list[Moved]], None]

_listeners: list[Listener] = []


def listen(listener: Listener) -> Listener:
    """Call `listener(status, rows)` after every status write that moved at least one message,
    inside that write's transaction. `rows` all have `status`. Registering twice is harmless."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def forget(listener: Listener) -> None:
    """Stop calling `listener` (tests)."""
    if listener in _listeners:
        _listeners.remove(listener)


def listening() -> bool:
    """Whether any listener is registered: writers skip collecting rows when none is."""
    return bool(_listeners)


def moved(status: str, rows: Iterable[Moved]) -> None:
    """Tell every listener that `rows` just moved to `status`. Called by status writers only,
    inside their transaction."""
    rows = list(rows)
    if not rows:
        return
    for listener in list(_listeners):
        listener(status, rows)
