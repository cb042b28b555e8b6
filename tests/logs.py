"""Log lines as the project's processes write them, for the tests that read them."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def at_info_into(handler: logging.Handler) -> Iterator[None]:
    """`handler` on the root logger, the root at INFO (the tests' settings keep it at WARNING),
    for the block; both put back after it."""
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
