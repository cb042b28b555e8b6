"""A tenant's webhook receiver: records every POST and answers 200, or what a test scripts
(`fail`), or holds the request open until released (`hold`) for the kill drill."""

from __future__ import annotations

import threading

from .http import HttpFake, Recorded, Reply


class WebhookReceiver(HttpFake):
    def __init__(self) -> None:
        super().__init__()
        self._holding = threading.Event()
        self._released = threading.Event()
        self.held = threading.Event()  # set when a held request arrived

    @property
    def endpoint(self) -> str:
        return f"{self.url}/hooks/alertflow"

    def hold(self) -> None:
        """Keep the next requests unanswered until `release()`."""
        self._released.clear()
        self._holding.set()

    def release(self) -> None:
        self._holding.clear()
        self._released.set()

    def route(self, request: Recorded) -> Reply:
        if self._holding.is_set():
            self.held.set()
            self._released.wait(timeout=60)
        return Reply.json(200, {"received": True})

    def posts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]
