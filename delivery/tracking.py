"""The ESPs' tracking events, as anymail's tracking views parse them (django-anymail signals).

`AnymailProvider.read_receipts` runs anymail's view for the ESP inside `collecting()`; the view
sends each parsed event to anymail's `tracking` signal, whose receiver here (connected in
delivery/signals.py) hands it back. A module of its own so the signal wiring loads no provider SDK.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from anymail.signals import AnymailTrackingEvent

# The events of the tracking view running in this context; None outside of `collecting()`.
_events: ContextVar[list | None] = ContextVar("tracking_events", default=None)


@contextmanager
def collecting() -> Iterator[list[AnymailTrackingEvent]]:
    """A list that receives the tracking events sent in this context until the block ends."""
    events: list[AnymailTrackingEvent] = []
    token = _events.set(events)
    try:
        yield events
    finally:
        _events.reset(token)


def collect(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """Receiver of anymail's `tracking` signal. Events sent outside `collecting()` are not ours."""
    events = _events.get()
    if events is not None:
        events.append(event)
