"""Where a benchmark runs: paths, the product's environment, a fresh database and Redis, and
an idle machine to measure on.

A benchmark runs against its own PostgreSQL database (`alertflow_bench`) and its own Redis
database number, both emptied at the start (`prepare()`); the fault drills use the same
functions with a database of their own (bench/drill_support.py).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
LOG_DIR = ROOT / "var" / "bench"
PYTHON = sys.executable

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DB_NAME", "alertflow_bench")
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB_NAME}")
# bench.postoffice's django-post_office side: a database of its own on the same server.
POSTOFFICE_DB_NAME = f"{DB_NAME}_postoffice"
POSTOFFICE_DATABASE_URL = DATABASE_URL.rsplit("/", 1)[0] + f"/{POSTOFFICE_DB_NAME}"
# bench.floor's reference endpoint: a database of its own on the same server.
FLOOR_DB_NAME = f"{DB_NAME}_floor"
FLOOR_DATABASE_URL = DATABASE_URL.rsplit("/", 1)[0] + f"/{FLOOR_DB_NAME}"
# A Redis database number nobody else uses: FLUSHDB at the start of every benchmark.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
# The production shape (docker-compose.yml): every email carries its one-click unsubscribe link,
# built on the public URL (a signed token and two headers per email: ~10% of a bulk email's
# worker CPU, bench/README session 9), and every process writes its metrics to files
# (prometheus-client's multiprocess mode, emptied at each benchmark's start). An empty
# `ALERTFLOW_PUBLIC_URL=` or `PROMETHEUS_MULTIPROC_DIR=` in the caller's environment measures
# without them, as bench/ did before session 9.
PUBLIC_URL = "https://alertflow.example.com"
METRICS_DIR = LOG_DIR / "prometheus"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
            # The SMTP sinks listen on 127.0.0.1: let the outbound guard reach them.
            "ALERTFLOW_ALLOW_PRIVATE_NETWORKS": "1",
        }
    )
    env.setdefault("ALERTFLOW_PUBLIC_URL", PUBLIC_URL)
    if env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(METRICS_DIR)):
        # prometheus-client opens its files there as a process's first metric is made.
        Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    env.update(extra)
    return env


def setup_django(env: dict[str, str] | None = None) -> None:
    """Configure this process like the product's (same database, Redis and secret): with `env`,
    or `bench_env()` when None."""
    os.environ.update(env if env is not None else bench_env())
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


def prepare_database(
    db_name: str = DB_NAME,
    database_url: str = DATABASE_URL,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] = log,
) -> None:
    """Create `db_name` if missing, migrate it (with `env`, default `bench_env()`) and empty
    every table but the bookkeeping.

    The database comment holds a fingerprint of the migration files: when they change (an
    initial migration regenerated in place), the database is dropped and migrated afresh.
    """
    import psycopg

    fingerprint = _migrations_fingerprint()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [db_name]
        ).fetchone()
        if row is not None and row[0] != fingerprint:
            log(f"migrations changed: recreating database {db_name}")
            conn.execute(f'DROP DATABASE "{db_name}" WITH (FORCE)')
            row = None
        if row is None:
            conn.execute(f'CREATE DATABASE "{db_name}"')
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env if env is not None else bench_env(),
        check=True,
        timeout=300,
    )
    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f"COMMENT ON DATABASE \"{db_name}\" IS '{fingerprint}'")
    empty_tables(database_url)


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


def flush_redis_and_metrics() -> None:
    """Empty the bench's Redis database, and the metrics files of the last run's processes."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    if metrics_dir := bench_env()["PROMETHEUS_MULTIPROC_DIR"]:
        for stale in Path(metrics_dir).glob("*.db"):
            stale.unlink(missing_ok=True)


# --- An idle machine ------------------------------------------------------------------------------


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


def prepare(quiet_wait: float) -> float:
    """Wait (up to `quiet_wait` s) for an idle machine, then give the run a fresh database, an
    empty Redis database and Django set up. Returns how busy the cores were before."""
    busy = wait_for_quiet(quiet_wait)
    log("preparing database and redis")
    prepare_database()
    flush_redis_and_metrics()
    setup_django()
    return busy
