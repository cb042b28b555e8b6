"""The request id travels in a context variable so every log line of a request carries it."""

import contextvars
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def current_request_id() -> str:
    """The id of the request (or task) this runs for: a row that later work picks up stores it,
    so that work's lines carry it too (Notification.request_id)."""
    return request_id_var.get()


@contextmanager
def acting_for(request_id: str) -> Iterator[None]:
    """Run the block under `request_id` (what it publishes carries it), then go back."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


# Query parameters that carry credentials on the websocket URL (`/ws/inbox?token=…`).
CREDENTIAL_PARAMS = re.compile(r"\b(token|hmac)=[^&\s\"']+")


def redact_credentials(text: str) -> str:
    return CREDENTIAL_PARAMS.sub(r"\1=[redacted]", text)


class RedactCredentialsFilter(logging.Filter):
    """Blanks credential query parameters in a record's message and arguments.

    uvicorn logs every websocket handshake with its full path and query string at INFO
    (`"WebSocket /ws/inbox?token=rt_…" [accepted]`): recipient tokens would sit in the ws logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_credentials(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_credentials(a) if isinstance(a, str) else a for a in record.args)
        return True


class QuietPollers(logging.Filter):
    """Leaves out Celery's INFO lines about a run of one of `tasks` (beat's every-second pollers)
    that did nothing: beat's "Sending due task", the worker's "received", and a "succeeded" whose
    task returned 0. Two pollers a second wrote 6 such lines a second, 21,600 an hour, burying
    the lines that say something. A run that did work still logs its "succeeded" with its count,
    and every warning and error, and every other task's lines, pass."""

    def __init__(self, tasks: Iterable[str] = ()):
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        if record.name == "celery.beat" and str(record.msg).startswith("Scheduler: Sending due task"):
            return not (isinstance(record.args, tuple) and len(record.args) == 2 and record.args[1] in self.tasks)
        # The worker's "received" and "succeeded" lines carry their task's context as `data`.
        context = getattr(record, "data", None)
        if isinstance(context, dict) and context.get("name") in self.tasks:
            return context.get("return_value", "0") != "0"
        return True
