"""CPU accounting: figures that hold up on a shared, busy machine.

CPU seconds per process tree come from /proc, PostgreSQL's from the bench database's backends;
`PySpy` records where a process's CPU goes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from .env import DB_NAME, PG_ADMIN_URL, PYTHON, log
from .processes import proc_stats


class PySpy(contextlib.AbstractContextManager):
    """`py-spy record` of a process and its children while the block runs (collapsed stacks,
    only threads holding the GIL: where the CPU goes, not where threads wait).

    Optional: py-spy is not a requirement of the project (`.venv/bin/pip install py-spy`). Does
    nothing when `path` is None or py-spy is missing. Needs ptrace rights (root, or
    kernel.yama.ptrace_scope=0).
    """

    def __init__(self, pid: int, path: Path | None, rate: int = 200) -> None:
        self.pid, self.path, self.rate = pid, path, rate
        self.popen: subprocess.Popen | None = None

    def __enter__(self) -> PySpy:
        exe = Path(PYTHON).parent / "py-spy"
        if self.path is None or not exe.exists():
            if self.path is not None:
                log("py-spy not installed in the virtualenv: no profile")
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.popen = subprocess.Popen(
            [str(exe), "record", "--pid", str(self.pid), "--subprocesses", "--rate", str(self.rate),
             "--format", "raw", "--output", str(self.path), "--nonblocking", "--gil"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        time.sleep(1.0)  # let it attach before the load starts
        return self

    def __exit__(self, *exc) -> None:
        if self.popen is None:
            return
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        log(f"py-spy profile written to {self.path}")


def _cpu_seconds() -> dict[int, tuple[int, float]]:
    """{pid: (parent pid, user+system CPU seconds)} for every process we can read."""
    ticks = os.sysconf("SC_CLK_TCK")
    return {pid: (int(f[1]), (int(f[11]) + int(f[12])) / ticks) for pid, f in proc_stats().items()}


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and its live descendants."""
    stats = _cpu_seconds()
    children: dict[int, list[int]] = {}
    for child, (parent, _cpu) in stats.items():
        children.setdefault(parent, []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            total += stats[current][1]
        todo.extend(children.get(current, []))
    return total


def postgres_sessions() -> int:
    """Sessions ever opened on the bench database (pg_stat_database, PostgreSQL 14+)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL) as conn:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [DB_NAME]).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def postgres_cpu_seconds() -> dict[int, float]:
    """{backend pid: CPU seconds so far} for the PostgreSQL backends connected to the bench database."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL) as conn:
        pids = [pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB_NAME])]
    stats = _cpu_seconds()
    return {pid: stats[pid][1] for pid in pids if pid in stats}


class CpuMeter:
    """CPU seconds used during a block by named process trees (and the bench database's backends)."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}
        self.new_pg_sessions = 0

    def __enter__(self) -> CpuMeter:
        self._start = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._pg_start = postgres_cpu_seconds()
        self._sessions = postgres_sessions()
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.used = {name: round(tree_cpu_seconds(pid) - self._start[name], 2) for name, pid in self.pids.items()}
        # Backends that connected during the block started from zero; ones that also exited
        # during it are lost, so with many reconnections (see `new_pg_sessions`) this undercounts.
        end = postgres_cpu_seconds()
        self.used["postgres"] = round(sum(cpu - self._pg_start.get(pid, 0.0) for pid, cpu in end.items()), 2)
        self.new_pg_sessions = postgres_sessions() - self._sessions
        self.used["wall"] = round(time.monotonic() - self._wall, 2)
