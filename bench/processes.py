"""The product as real subprocesses, and waiting on them.

`Processes` starts children (each leading its own process group, logging to
`var/bench/<name>.log`) and stops them on exit, whatever the exit (Ctrl-C included).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alertflow.cpus import usable_cpus
from alertflow.queues import WORKER_PROCESSES_PER_CORE

from .env import LOG_DIR, PYTHON, ROOT, bench_env

WORKER_NAME = "bench-worker@%h"
# The product's default (config/settings.py CELERY_WORKER_CONCURRENCY, `make run`): prefork,
# two processes per core.
WORKER_CONCURRENCY = WORKER_PROCESSES_PER_CORE * usable_cpus()


# Ports this process handed out from BENCH_PORT_RANGE: free until a child binds them, so taken.
_handed_out: set[int] = set()


def free_port() -> int:
    """A free port on 127.0.0.1: one the system picks, or a free one of `BENCH_PORT_RANGE`
    (e.g. `8700-8799`) on a machine whose users share out port ranges."""
    low, _, high = os.environ.get("BENCH_PORT_RANGE", "").partition("-")
    if not (low and high):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    for port in range(int(low), int(high) + 1):
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in BENCH_PORT_RANGE={low}-{high}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1, procs=None) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False). With `procs`,
    raise as soon as one of its children died (see `Processes.check`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if procs is not None:
            procs.check()
        time.sleep(interval)
    return predicate()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1, procs=None) -> None:
    """`wait_for`, raising TimeoutError naming `what` when it does not happen."""
    if not wait_for(predicate, timeout, interval, procs):
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path


class Processes(contextlib.AbstractContextManager):
    """Subprocesses started here and stopped on exit, whatever the exit (Ctrl-C included).

    Each child leads its own process group, so a terminal's Ctrl-C reaches only this process,
    which then stops its children in order: SIGTERM, and SIGKILL to the group after a grace.
    """

    def __init__(self) -> None:
        self.procs: list[Proc] = []
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        log_path = LOG_DIR / f"{name}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=env or bench_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def check(self) -> None:
        """Raise if a child died (with the end of its log)."""
        for proc in self.procs:
            if proc.popen.poll() is not None:
                tail = proc.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; log tail:\n{tail}")

    def stop(self, proc: Proc, grace: float = 15.0) -> None:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(5)
        # Children a master left behind (a gunicorn worker, a celery pool process) share its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def __exit__(self, *exc) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as error:  # keep stopping the others
                print(f"stopping {proc.name} failed: {error!r}", file=sys.stderr)


# The API's WSGI servers bench.accept can measure: gunicorn's gthread (the product's) and sync
# workers, and granian's WSGI interface (not a requirement: `pip install granian` to measure it).
WEB_SERVERS = ("gthread", "sync", "granian")


def start_web(procs: Processes, port: int, workers: int, threads: int, server: str = "gthread") -> Proc:
    """The API on 127.0.0.1:`port` served by `server` (one of WEB_SERVERS), as the process "gunicorn"
    whatever the server (the CPU tables' row); `threads` per worker (sync: one, whatever it says)."""
    if server != "granian":
        return start_gunicorn(procs, port, workers, threads, server)
    proc = procs.start(
        "gunicorn",
        [
            PYTHON, "-m", "granian", "--interface", "wsgi", "config.wsgi:application",
            "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers),
            "--blocking-threads", str(threads),
            "--runtime-threads", "1",
            "--http", "1", "--no-ws",
            "--backlog", "2048",
            "--workers-kill-timeout", "10",
        ],
    )  # fmt: skip
    wait_until(lambda: health_ok(port), 60, "granian", interval=0.2, procs=procs)
    return proc


def health_ok(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# gunicorn's configuration and WSGI application for the product, as `make run` and the Dockerfile
# start it.
PRODUCT_WSGI = ("--config", "python:config.gunicorn", "config.wsgi")


def start_gunicorn(
    procs: Processes,
    port: int,
    workers: int,
    threads: int,
    worker_class: str = "gthread",
    wsgi: Sequence[str] = PRODUCT_WSGI,
    env: dict[str, str] | None = None,
) -> Proc:
    """gunicorn serving `wsgi` (its arguments naming the application: the product's unless told)
    with `env` (default `bench_env()`); returns once `/api/v1/health` answers 200."""
    # gunicorn runs a sync worker class with more than one thread as gthread: one, to mean sync.
    threads = 1 if worker_class == "sync" else threads
    proc = procs.start(
        "gunicorn",
        [
            PYTHON, "-m", "gunicorn", *wsgi,
            "--bind", f"127.0.0.1:{port}",
            "--worker-class", worker_class,
            "--workers", str(workers),
            "--threads", str(threads),
            "--backlog", "2048",
            "--keep-alive", "30",
            "--graceful-timeout", "10",
        ],
        env,
    )  # fmt: skip
    wait_until(lambda: health_ok(port), 60, "gunicorn", interval=0.2, procs=procs)
    return proc


def start_relay(procs: Processes) -> Proc:
    """The outbox relay (`manage.py relay`): nothing a request accepts reaches the broker
    without it. Ready as soon as it runs (it publishes whatever committed before it started)."""
    return procs.start("relay", [PYTHON, "manage.py", "relay"])


def start_worker(
    procs: Processes,
    queues: str,
    concurrency: int,
    conf: dict | None = None,
    name: str = WORKER_NAME,
    pool: str = "prefork",
) -> Proc:
    """A Celery worker on `queues`; returns once it answers a ping. `conf` overrides app settings
    (an experiment, through bench.worker) without touching config/celery.py. Several workers at
    once need their own `name`s (`bench-fan-out@%h`). `pool`: Celery's `-P` (prefork, threads, solo)."""
    env = bench_env(BENCH_CELERY_CONF=json.dumps(conf)) if conf else None
    proc = procs.start(
        "worker" if name == WORKER_NAME else name.partition("@")[0],
        [
            PYTHON, "-m", "bench.worker" if conf else "celery", "-A", "config", "worker",
            "-Q", queues, "-P", pool, "-c", str(concurrency), "--prefetch-multiplier", "1",
            "-n", name, "--without-gossip", "--without-mingle",
            # Celery sets the root logger's level from this: the same as the other processes'.
            "--loglevel", bench_env()["LOG_LEVEL"],
        ],
        env,
    )  # fmt: skip
    from config.celery import app

    wait_until(
        lambda: bool(app.control.ping(destination=[worker_hostname(name)], timeout=0.5)),
        90,
        "the celery worker",
        interval=0.2,
        procs=procs,
    )
    return proc


def worker_hostname(name: str = WORKER_NAME) -> str:
    return name.replace("%h", socket.gethostname())


# --- /proc ---------------------------------------------------------------------------------------


def proc_stats() -> dict[int, list[str]]:
    """{pid: the fields of /proc/<pid>/stat after the command name} for every process we can
    read: [0] state, [1] parent pid, [2] process group, [11] user and [12] system CPU ticks."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        stats[int(entry)] = data[data.rfind(")") + 2 :].split()
    return stats


def group_members(pgid: int) -> list[int]:
    """The pids in process group `pgid`."""
    return [pid for pid, fields in proc_stats().items() if int(fields[2]) == pgid]
