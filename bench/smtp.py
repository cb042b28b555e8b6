"""The SMTP sink the benchmarks deliver to, and its own ceiling.

`SmtpSink` is aiosmtpd in a process of its own (its own share of the cores: DESIGN section 7),
recording each arrival's time, `X-AlertFlow-Message-Id` and recipient.
`measure_sink_ceiling` is what plain smtplib clients get through it, the figure end-to-end
rates are a ratio to. (The fault drills' sink, which must survive its own restarts, writes to a
file instead: bench/drill_support.py.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import smtplib
import threading
import time
from collections.abc import Callable

from .processes import Processes, free_port, wait_for

HEADER_MESSAGE_ID = b"X-AlertFlow-Message-Id"
BENCH_HEADER = b"X-Bench-Id"
FROM_EMAIL = "AlertFlow Bench <bench@alertflow.test>"


class _CountingHandler:
    """aiosmtpd handler: accept everything, remember (arrival time, message id, first recipient)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, str, str]] = []

    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        content = envelope.content
        head = content[: content.find(b"\r\n\r\n")]
        key = _header(head, HEADER_MESSAGE_ID) or _header(head, BENCH_HEADER)
        with self.lock:
            self.arrivals.append((now, key, envelope.rcpt_tos[0] if envelope.rcpt_tos else ""))
        return "250 2.0.0 OK"


def _header(head: bytes, name: bytes) -> str:
    start = head.find(b"\n" + name + b": ")
    if start < 0:
        return ""
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else None].decode("ascii", "replace").strip()


def _sink_main(port: int, conn) -> None:
    """The sink process: aiosmtpd in a thread, commands from the parent on `conn`."""
    from aiosmtpd.controller import Controller

    handler = _CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="bench-sink.test")
    controller.start()
    conn.send("ready")
    try:
        while True:
            command, *args = conn.recv()
            if command == "count":
                conn.send(len(handler.arrivals))
            elif command == "since":
                with handler.lock:
                    conn.send(handler.arrivals[args[0] :])
            elif command == "reset":
                with handler.lock:
                    handler.arrivals.clear()
                conn.send(True)
            elif command == "stop":
                conn.send(True)
                break
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        controller.stop()


class SmtpSink:
    """An aiosmtpd server in its own process (its own share of the cores), counting arrivals.

    `arrivals()` returns `[(unix time, message id, recipient)]`: the message id is the
    `X-AlertFlow-Message-Id` header the product sets (or `X-Bench-Id` for the blaster's).
    """

    def __init__(self) -> None:
        self.port = free_port()
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_sink_main, args=(self.port, child), name="bench-smtp-sink", daemon=True)
        self._lock = threading.Lock()
        self._seen: list[tuple[float, str, str]] = []

    def __enter__(self) -> SmtpSink:
        self._process.start()
        if not self._conn.poll(30):
            raise TimeoutError("the SMTP sink did not start")
        self._conn.recv()
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self._call("stop")
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)

    @property
    def pid(self) -> int:
        return self._process.pid

    def _call(self, *command):
        with self._lock:
            self._conn.send(command)
            return self._conn.recv()

    def count(self) -> int:
        return self._call("count")

    def reset(self) -> None:
        self._call("reset")
        self._seen = []

    def arrivals(self) -> list[tuple[float, str, str]]:
        """Everything received since the last reset (fetched incrementally)."""
        self._seen.extend(self._call("since", len(self._seen)))
        return self._seen

    def wait_count(self, n: int, timeout: float, procs: Processes | None = None) -> bool:
        """Wait until `n` messages arrived; False on timeout (the caller reports what came)."""
        return wait_for(lambda: self.count() >= n, timeout, interval=0.05, procs=procs)

    def wait_for(self, predicate: Callable[[tuple[float, str, str]], bool], timeout: float) -> float | None:
        """The arrival time of the first message matching `predicate`, or None on timeout."""
        deadline = time.monotonic() + timeout
        checked = 0
        while time.monotonic() < deadline:
            arrivals = self.arrivals()
            for item in arrivals[checked:]:
                if predicate(item):
                    return item[0]
            checked = len(arrivals)
            time.sleep(0.01)
        return None


def _blast_connection(port: int, count: int, prefix: str, body: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="bench-blaster.test", timeout=30) as smtp:
        for i in range(count):
            key = f"{prefix}-{i}"
            message = (
                f"From: {FROM_EMAIL}\r\nTo: blast-{i}@bench.test\r\nSubject: Blast {i}\r\n"
                f"Message-ID: <{key}@alertflow.test>\r\n{BENCH_HEADER.decode()}: {key}\r\n"
                'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="utf-8"\r\n'
                "Content-Transfer-Encoding: 7bit\r\n\r\n"
            ).encode() + body
            smtp.sendmail("bench@alertflow.test", [f"blast-{i}@bench.test"], message)


def measure_sink_ceiling(sink: SmtpSink, connections: int, total: int) -> dict:
    """What the sink takes from plain smtplib clients (threads, one connection each): msgs/s.

    The body is the size of the product's emails, so the sink does the same work per message.
    """
    sink.reset()
    per = total // connections
    body = b"Your bench message.\r\nThis line makes the body about the size of a short notification.\r\n"
    threads = [
        threading.Thread(target=_blast_connection, args=(sink.port, per, f"blast{c}", body)) for c in range(connections)
    ]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.wait_count(per * connections, 30)
    arrivals = sink.arrivals()
    last = max(t for t, _, _ in arrivals)
    sink.reset()
    return {
        "connections": connections,
        "messages": len(arrivals),
        "seconds": round(last - started, 3),
        "per_second": round(len(arrivals) / (last - started), 1),
    }
