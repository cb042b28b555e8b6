"""CPU accounting: figures that hold up on a shared, busy machine.

CPU seconds per process tree come from /proc (the local Redis server's too), PostgreSQL's from
the bench database's backends;
`PySpy` records where a process's CPU goes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from .env import DB_NAME, PG_ADMIN_URL, PYTHON, REDIS_URL, log
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


def tree_members(pid: int, stats: dict[int, tuple[int, float]]) -> list[int]:
    """`pid` and its live descendants, from `_cpu_seconds()`'s parent pids."""
    children: dict[int, list[int]] = {}
    for child, (parent, _cpu) in stats.items():
        children.setdefault(parent, []).append(child)
    members, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            members.append(current)
        todo.extend(children.get(current, []))
    return members


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and its live descendants."""
    stats = _cpu_seconds()
    return sum(stats[member][1] for member in tree_members(pid, stats))


def local_port_owners() -> dict[int, int]:
    """{local TCP port: pid of a process holding that socket}, from /proc/net/tcp{,6} and every
    readable /proc/<pid>/fd: which process a PostgreSQL backend's client (its client_port) is."""
    port_of_inode = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)  # the header
            for line in f:
                fields = line.split()
                port_of_inode[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    owners = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{entry}/fd/{fd}")
                    if target.startswith("socket:[") and int(target[8:-1]) in port_of_inode:
                        owners[port_of_inode[int(target[8:-1])]] = int(entry)
    return owners


def postgres_sessions(database: str = DB_NAME) -> int:
    """Sessions ever opened on `database` (pg_stat_database, PostgreSQL 14+)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL) as conn:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [database]).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def redis_server_pid() -> int | None:
    """The Redis server of the bench's REDIS_URL when it runs on this machine (the process
    holding its port), else None. Its CPU is every client's: the bench's alone only on a Redis
    of its own (BENCH_REDIS_URL)."""
    url = urlsplit(REDIS_URL)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    return local_port_owners().get(url.port or 6379)


def postgres_backends(database: str = DB_NAME) -> dict[int, int | None]:
    """{backend pid: its client's TCP port (None over a Unix socket)} for the PostgreSQL backends
    connected to `database`."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL) as conn:
        rows = conn.execute("SELECT pid, client_port FROM pg_stat_activity WHERE datname = %s", [database])
        return dict(rows.fetchall())


def postgres_cpu_seconds(database: str = DB_NAME) -> dict[int, float]:
    """{backend pid: CPU seconds so far} for the PostgreSQL backends connected to `database`."""
    stats = _cpu_seconds()
    return {pid: stats[pid][1] for pid in postgres_backends(database) if pid in stats}


class CpuMeter:
    """CPU seconds used during a block by named process trees (and the PostgreSQL backends of
    `database`, the bench database unless told): `used`. `postgres_by_client` splits the
    backends' seconds by the named tree whose process holds each one's connection ("other":
    none of them, e.g. the bench itself), to tell the accept's statements from the worker's."""

    def __init__(self, *, database: str = DB_NAME, **pids: int) -> None:
        self.database = database
        self.pids = pids
        self.used: dict[str, float] = {}
        self.postgres_by_client: dict[str, float] = {}
        self.new_pg_sessions = 0

    def __enter__(self) -> CpuMeter:
        self._start = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._pg_start = postgres_cpu_seconds(self.database)
        self._sessions = postgres_sessions(self.database)
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.used = {name: round(tree_cpu_seconds(pid) - self._start[name], 2) for name, pid in self.pids.items()}
        # Backends that connected during the block started from zero; ones that also exited
        # during it are lost, so with many reconnections (see `new_pg_sessions`) this undercounts.
        end = postgres_cpu_seconds(self.database)
        self.used["postgres"] = round(sum(cpu - self._pg_start.get(pid, 0.0) for pid, cpu in end.items()), 2)
        self.postgres_by_client = self._postgres_by_client(end)
        self.new_pg_sessions = postgres_sessions(self.database) - self._sessions
        self.used["wall"] = round(time.monotonic() - self._wall, 2)

    def _postgres_by_client(self, end: dict[int, float]) -> dict[str, float]:
        stats = _cpu_seconds()
        name_of_pid = {member: name for name, pid in self.pids.items() for member in tree_members(pid, stats)}
        owners = local_port_owners()
        ports = postgres_backends(self.database)
        split: dict[str, float] = {}
        for backend, cpu in end.items():
            name = name_of_pid.get(owners.get(ports.get(backend) or 0, 0), "other")
            split[name] = split.get(name, 0.0) + cpu - self._pg_start.get(backend, 0.0)
        return {name: round(seconds, 2) for name, seconds in split.items()}
