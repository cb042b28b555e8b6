"""What every benchmark shares: the environment, a clean database and Redis, processes, the SMTP
sink, the HTTP client side, percentiles, the table printer and the results file.

A benchmark runs against its own PostgreSQL database (`alertflow_bench`) and its own Redis
database number, both emptied at the start, and starts the product as real subprocesses
(gunicorn, celery) with the environment from `bench_env()`. Everything it starts is stopped in a
`finally`, Ctrl-C included: use `Processes` as a context manager.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import platform
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
LOG_DIR = ROOT / "var" / "bench"
PYTHON = sys.executable

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DB_NAME", "alertflow_bench")
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB_NAME}")
# A Redis database number nobody else uses: FLUSHDB at the start of every benchmark.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")

HEADER_MESSAGE_ID = b"X-AlertFlow-Message-Id"
BENCH_HEADER = b"X-Bench-Id"
FROM_EMAIL = "AlertFlow Bench <bench@alertflow.test>"
WORKER_NAME = "bench-worker@%h"


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of the product's processes (and of this one, for the ORM)."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "CELERY_BROKER_URL": REDIS_URL,
            "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "ALERTFLOW_TENANT_RATE": "1000000/min",
            "ALERTFLOW_REGISTER_RATE": "1000/min",
            "ALERTFLOW_VAR_DIR": str(LOG_DIR / "var"),
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
            # No provider credentials from the caller's shell: deployment defaults are the console.
            "EMAIL_PROVIDER": "console",
            # The benchmark tenants' SMTP sink listens on 127.0.0.1.
            "ALERTFLOW_ALLOW_PRIVATE_NETWORKS": "true",
        }
    )
    env.update(extra)
    return env


def setup_django() -> None:
    """Configure this process like the product's (same database, Redis and secret)."""
    os.environ.update(bench_env())
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- Database and Redis -------------------------------------------------------------------------


def _migrations_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("*/migrations/*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def prepare_database(log: Callable[[str], None] = print) -> None:
    """Create `alertflow_bench` if missing, migrate it and empty every table but the bookkeeping.

    The database comment holds a fingerprint of the migration files: when they change (an
    initial migration regenerated in place), the database is dropped and migrated afresh.
    """
    import psycopg

    fingerprint = _migrations_fingerprint()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [DB_NAME]
        ).fetchone()
        if row is not None and row[0] != fingerprint:
            log(f"migrations changed: recreating database {DB_NAME}")
            conn.execute(f'DROP DATABASE "{DB_NAME}" WITH (FORCE)')
            row = None
        if row is None:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=bench_env(), check=True, timeout=300
    )
    with psycopg.connect(DATABASE_URL.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f"COMMENT ON DATABASE \"{DB_NAME}\" IS '{fingerprint}'")
    empty_tables(DATABASE_URL)


def empty_tables(database_url: str) -> None:
    """Empty every table of a migrated database but Django's bookkeeping, for a fresh run."""
    import psycopg

    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        keep = {"django_migrations", "django_content_type", "auth_permission"}
        tables = [
            name
            for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
            if name not in keep
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Processes ----------------------------------------------------------------------------------


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


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1, procs=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if procs is not None:
            procs.check()
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def start_gunicorn(procs: Processes, port: int, workers: int, threads: int) -> Proc:
    proc = procs.start(
        "gunicorn",
        [
            PYTHON, "-m", "gunicorn", "config.wsgi",
            "--bind", f"127.0.0.1:{port}",
            "--worker-class", "gthread",
            "--workers", str(workers),
            "--threads", str(threads),
            "--backlog", "2048",
            "--keep-alive", "30",
            "--graceful-timeout", "10",
        ],
    )  # fmt: skip
    import httpx

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60, "gunicorn", interval=0.2, procs=procs)
    return proc


def start_worker(procs: Processes, queues: str, concurrency: int, conf: dict | None = None) -> Proc:
    """A Celery worker on `queues`; returns once it answers a ping. `conf` overrides app settings
    (an experiment, through bench.worker) without touching config/celery.py."""
    env = bench_env(BENCH_CELERY_CONF=json.dumps(conf)) if conf else None
    proc = procs.start(
        "worker",
        [
            PYTHON, "-m", "bench.worker" if conf else "celery", "-A", "config", "worker",
            "-Q", queues, "-c", str(concurrency), "--prefetch-multiplier", "1",
            "-n", WORKER_NAME, "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
        ],
        env,
    )  # fmt: skip
    from config.celery import app

    wait_until(
        lambda: bool(app.control.ping(destination=[worker_hostname()], timeout=0.5)),
        90,
        "the celery worker",
        interval=0.2,
        procs=procs,
    )
    return proc


def worker_hostname() -> str:
    return WORKER_NAME.replace("%h", socket.gethostname())


# --- The SMTP sink --------------------------------------------------------------------------------


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
        try:
            wait_until(lambda: self.count() >= n, timeout, f"{n} emails at the sink", interval=0.05, procs=procs)
            return True
        except TimeoutError:
            return False

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


# --- The API, from the outside ----------------------------------------------------------------------


def register_tenant(base_url: str, name: str = "bench") -> tuple[str, str]:
    """A tenant through the real API; returns (tenant id, API key)."""
    import httpx

    response = httpx.post(
        f"{base_url}/api/v1/register", json={"service_name": name, "notification_types": ["bench"]}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    return body["client_id"], body["api_token"]


def create_recipients(tenant_id, count: int, prefix: str = "r") -> list[str]:
    """`count` recipients with an email address, written with bulk_create; returns their ids."""
    from preferences.models import Recipient

    ids = [f"{prefix}{i:06d}" for i in range(count)]
    Recipient.objects.bulk_create(
        [Recipient(tenant_id=tenant_id, external_id=rid, email=f"{rid}@bench.test") for rid in ids], batch_size=2000
    )
    return ids


def create_smtp_provider(tenant_id, port: int) -> None:
    """The tenant's `smtp` provider, pointing at the bench sink."""
    from delivery.channels import provider_class
    from delivery.models import Provider

    config = provider_class("email", "smtp").validate_config(
        {"host": "127.0.0.1", "port": port, "from_email": FROM_EMAIL, "timeout": 10}
    )
    provider = Provider(tenant_id=tenant_id, channel="email", kind="smtp", name="bench-sink", priority=0)
    provider.set_config(config)
    provider.save()


def email_send(recipient: str | None = None, recipients: list[str] | None = None, priority: str | None = None) -> dict:
    body: dict = {
        "channels": ["email"],
        "content": {"email": {"subject": "Bench {{ recipient.id }}", "text": "Hello."}},
    }
    if recipient is not None:
        body["recipient"] = recipient
    if recipients is not None:
        body["recipients"] = recipients
    if priority is not None:
        body["priority"] = priority
    return body


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    # (send start unix time, message id) per accepted single send
    accepted: list[tuple[float, str]] = field(default_factory=list)
    client_cpu: float = 0.0  # CPU seconds the load generator itself used


def _load_thread(base_url, api_key, bodies: Iterable[dict], result: LoadResult, lock: threading.Lock) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"}
    latencies, accepted, errors = [], [], {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for body in bodies:
            sent_at = time.time()
            start = time.perf_counter()
            try:
                response = client.post("/api/v1/notifications", json=body)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            elapsed = time.perf_counter() - start
            if response.status_code != 202:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                continue
            latencies.append(elapsed)
            messages = response.json().get("messages") or []
            accepted.extend((sent_at, m["id"]) for m in messages)
    with lock:
        result.latencies.extend(latencies)
        result.accepted.extend(accepted)
        for key, n in errors.items():
            result.errors[key] = result.errors.get(key, 0) + n


def run_load(base_url: str, api_key: str, bodies: list[dict], clients: int) -> LoadResult:
    """POST `bodies` with `clients` threads, each with its own keep-alive httpx.Client."""
    result = LoadResult()
    lock = threading.Lock()
    shares = [bodies[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=_load_thread, args=(base_url, api_key, share, result, lock)) for share in shares]
    cpu = time.process_time()
    result.started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.finished = time.time()
    result.client_cpu = time.process_time() - cpu
    return result


def _load_process(base_url, api_key, bodies, threads, queue) -> None:
    result = run_load(base_url, api_key, bodies, threads)
    queue.put((result.latencies, result.errors, result.started, result.finished, result.accepted, result.client_cpu))


def run_load_processes(base_url: str, api_key: str, bodies: list[dict], clients: int, processes: int) -> LoadResult:
    """`run_load` split over `processes` client processes, so the load generator's GIL is not the limit."""
    if processes <= 1:
        return run_load(base_url, api_key, bodies, clients)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    children = [
        ctx.Process(target=_load_process, args=(base_url, api_key, bodies[i::processes], threads, queue))
        for i, threads in enumerate(per)
    ]
    for child in children:
        child.start()
    result = LoadResult(started=float("inf"))
    for _ in children:
        latencies, errors, started, finished, accepted, client_cpu = queue.get(timeout=600)
        result.client_cpu += client_cpu
        result.latencies.extend(latencies)
        result.accepted.extend(accepted)
        for key, n in errors.items():
            result.errors[key] = result.errors.get(key, 0) + n
        result.started = min(result.started, started)
        result.finished = max(result.finished, finished)
    for child in children:
        child.join(10)
    return result


# --- Numbers, tables, results ---------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary_ms(values: Sequence[float]) -> dict:
    """p50/p95/p99/max (and mean) in milliseconds of latencies given in seconds."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "p50": round(percentile(values, 50) * 1000, 1),
        "p95": round(percentile(values, 95) * 1000, 1),
        "p99": round(percentile(values, 99) * 1000, 1),
        "max": round(max(values) * 1000, 1),
        "mean": round(statistics.fmean(values) * 1000, 1),
    }


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        if abs(value) < 10:
            return f"{value:.3f}"
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A fixed-width table: text columns left-aligned, numbers right-aligned. Returns the text."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(str(h)), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    text_columns = {
        i
        for i in range(len(headers))
        if all(isinstance(row[i], str) and not row[i][:1].isdigit() for row in rows if row[i] is not None)
    }

    def line(values) -> str:
        return "  ".join(
            str(v).ljust(widths[i]) if i in text_columns else str(v).rjust(widths[i]) for i, v in enumerate(values)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    text = "\n".join([title, rule, line(headers), rule, *(line(r) for r in cells), rule])
    print(text, flush=True)
    return text


def machine_facts() -> dict:
    facts = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
    }
    with contextlib.suppress(Exception):
        facts["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    with contextlib.suppress(Exception):
        facts["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(PG_ADMIN_URL) as conn:
            facts["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    with contextlib.suppress(Exception):
        import redis

        facts["redis"] = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    with contextlib.suppress(Exception):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        facts["git_commit"] = head.stdout.strip()
        facts["git_dirty"] = bool(dirty.stdout.strip())
    return facts


def write_results(name: str, parameters: dict, results: dict, summary: list[dict], tables: list[str]) -> Path:
    """Write `bench/results/<name>.json`. `summary` rows: {"metric", "value", "unit", "target", "ok"}."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "parameters": parameters,
        "results": results,
        "summary": summary,
        "tables": tables,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}", flush=True)
    return path


def summary_row(metric: str, value, unit: str, target: str = "", ok: bool | None = None) -> dict:
    return {"metric": metric, "value": value, "unit": unit, "target": target, "ok": ok}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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


def cpu_busy(seconds: float = 1.0) -> float:
    """The share (0..1) of all cores busy over `seconds`, from /proc/stat: whoever uses them."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return round(1 - (idle1 - idle0) / max(1, total1 - total0), 3)


def wait_for_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (at most `max_wait` s) until the machine is mostly idle before measuring: other
    people's test runs on a shared 2-core box move every figure. Returns the last busy share."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        log(f"machine busy ({busy:.0%} of the cores before we start): waiting")
        time.sleep(4)
        busy = cpu_busy()
    if busy > threshold:
        log(f"WARNING: measuring on a busy machine ({busy:.0%} of the cores used by others)")
    return busy


# --- CPU accounting: figures that hold up on a shared, busy machine ------------------------------


def _proc_stats() -> dict[int, tuple[int, float]]:
    """{pid: (parent pid, user+system CPU seconds)} for every process we can read."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(")") + 2 :].split()
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return stats


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and its live descendants."""
    stats = _proc_stats()
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
    stats = _proc_stats()
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


def prepare(quiet_wait: float) -> float:
    """Wait (up to `quiet_wait` s) for an idle machine, then give the run a fresh database, an
    empty Redis database and Django set up. Returns how busy the cores were before."""
    busy = wait_for_quiet(quiet_wait)
    log("preparing database and redis")
    prepare_database(log)
    flush_redis()
    setup_django()
    return busy
