"""The stack `make run` starts, measured like bench/'s: one bulk send of 5,000 emails.

Issue 14 measured a bulk send of 5,000 at 246/s from `make run` against 508/s from bench/. This
starts `manage.py run` itself (alertflow/management/commands/run.py: web, ws, the outbox relay,
one worker on every queue, beat, and with no `DATABASE_URL`/`REDIS_URL` SQLite and an embedded
Redis), with its own defaults but DEBUG off (a `SECRET_KEY` is given), its own var directory (`var/bench/makerun/`, a
developer's `var/` is never touched) and ports from `BENCH_PORT_RANGE`. The tenant's SMTP
provider points at an SMTP sink (bench/smtp.py); one bulk request to `--bulk` recipients is
timed to the last arrival, `--rounds` times. Then, in the same run, bench/'s own stack (gunicorn,
the relay and `celery worker -Q default,email -c 4` on PostgreSQL: bench.e2e's bulk path) does the same,
unless `--no-bench-stack`. Each stack runs in a child process of its own (its own Django set-up:
SQLite or PostgreSQL) with a sink of its own, whose ceiling it measures first.

`--database postgres` runs the make-run stack on the bench's PostgreSQL database instead of
SQLite, and `--env NAME=VALUE` sets anything else in its environment (`LOG_LEVEL=WARNING`): the
levers to find where a difference comes from.

    .venv/bin/python -m bench.makerun [--bulk 5000] [--rounds 2] [--database sqlite|postgres] [--env N=V ...]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import time
from pathlib import Path

from .client import create_recipients, create_smtp_provider, register_tenant
from .cpu import CpuMeter
from .e2e import run_bulk
from .env import (
    DATABASE_URL,
    LOG_DIR,
    PYTHON,
    flush_redis_and_metrics,
    log,
    prepare_database,
    setup_django,
    wait_for_quiet,
)
from .processes import (
    WORKER_CONCURRENCY,
    Proc,
    Processes,
    free_port,
    proc_stats,
    start_gunicorn,
    start_relay,
    start_worker,
    wait_until,
)
from .report import pct, print_table, summary_row, write_results
from .smtp import SmtpSink, measure_sink_ceiling

VAR_DIR = LOG_DIR / "makerun"
# What the caller's shell may set that `make run` would then use instead of its own defaults.
INHERITED = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "LOG_LEVEL", "DEBUG", "HOST", "PORT", "WS_PORT")
# The runner's children, told apart by their command lines.
CHILD_MARKS = (
    ("web", "gunicorn"),
    ("ws", "uvicorn"),
    ("worker", " worker"),
    ("beat", " beat"),
    ("redis", "redis"),
    ("relay", " relay"),
)


def makerun_env(port: int, database: str, extra: dict[str, str]) -> dict[str, str]:
    """`make run`'s environment: the caller's, less what would override its defaults, with DEBUG
    off (so a SECRET_KEY), its own var directory and ports."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED and not k.startswith("ALERTFLOW_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "0",
            "SECRET_KEY": "bench-makerun-secret-key-not-for-production-0123456789",
            "ALERTFLOW_VAR_DIR": str(VAR_DIR),
            "PORT": str(port),
            "WS_PORT": str(free_port()),
        }
    )
    if database == "postgres":
        env["DATABASE_URL"] = DATABASE_URL
    env.update(extra)
    return env


def stack_children(runner_pid: int) -> dict[str, int]:
    """{web, ws, worker, beat, redis: pid} of the runner's children (each leads its own group)."""
    names = {}
    for pid, fields in proc_stats().items():
        if int(fields[1]) != runner_pid:
            continue
        try:
            text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for name, mark in CHILD_MARKS:
            if mark in text and name not in names:
                names[name] = pid
                break
    return names


def start_makerun(procs: Processes, env: dict[str, str]) -> Proc:
    import httpx

    runner = procs.start("makerun", [PYTHON, "manage.py", "run"], env)
    url = f"http://127.0.0.1:{env['PORT']}/api/v1/health"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 180, "manage.py run", interval=0.5, procs=procs)
    wait_until(lambda: "worker" in stack_children(runner.popen.pid), 30, "the make-run worker", procs=procs)
    return runner


def measure(stack: str, args, queue) -> None:
    """In a child process: start `stack` ("makerun" or "bench"), send the bulk `args.rounds`
    times, and put the figures on `queue`."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with SmtpSink() as sink, Processes() as procs:
        ceiling = measure_sink_ceiling(sink, 1, args.ceiling_messages)["per_second"]
        if stack == "makerun":
            env = makerun_env(port, args.database, dict(item.split("=", 1) for item in args.env))
            log(f"starting manage.py run ({args.database}{', ' + ' '.join(args.env) if args.env else ''})")
            runner = start_makerun(procs, env)
            # This process's ORM onto the stack's database and Redis, as the stack's settings choose them.
            for name in INHERITED:
                os.environ.pop(name, None)
            setup_django({**env, "REDIS_URL": f"unix://{(VAR_DIR / 'redis.sock').resolve()}", "LOG_LEVEL": "WARNING"})
            # Consuming, as bench/'s worker is when its bulk starts (start_worker): the runner's
            # worker process exists long before its pool has loaded Django, and a first round
            # timed from then counted its start-up (seconds on a busy box).
            from config.celery import app

            started = time.monotonic()
            wait_until(lambda: bool(app.control.ping(timeout=0.5)), 120, "the make-run worker's ping", procs=procs)
            log(f"the make-run worker answered its ping {time.monotonic() - started:.1f} s after the API did")
        else:
            setup_django()
            log(f"starting bench/'s stack: gunicorn 2x4 and a worker -Q default,email -c {args.concurrency}")
            web = start_gunicorn(procs, port, 2, 4)
            relay = start_relay(procs)
        tenant_id, api_key = register_tenant(base_url)
        ids = create_recipients(tenant_id, args.bulk)
        create_smtp_provider(base_url, api_key, sink.port)
        if stack == "makerun":
            pids = {**stack_children(runner.popen.pid), "all": runner.popen.pid}
        else:
            worker = start_worker(procs, "default,email", args.concurrency)
            pids = {"web": web.popen.pid, "relay": relay.popen.pid, "worker": worker.popen.pid}
        runs = []
        for number in range(1, args.rounds + 1):
            log(f"{stack} round {number}: one bulk send to {len(ids)}")
            with CpuMeter(**pids) as cpu:
                bulk = run_bulk(sink, procs, base_url, api_key, ids)
            bulk["cpu_ms_per_email"] = {
                name: round(used * 1000 / max(1, bulk["arrived"]), 2)
                for name, used in cpu.used.items()
                if name != "wall"
            }
            bulk["ceiling_1conn_per_second"] = ceiling
            runs.append(bulk)
    queue.put(runs)


def in_child(stack: str, args) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=measure, args=(stack, args, queue), name=f"bench-makerun-{stack}")
    child.start()
    try:
        return queue.get(timeout=args.rounds * 600 + 300)
    finally:
        child.join(60)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bulk", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite", help="the make-run stack's")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="for the make-run stack")
    parser.add_argument("--no-bench-stack", action="store_true", help="only the make-run stack")
    parser.add_argument(
        "--concurrency", type=int, default=WORKER_CONCURRENCY, help="bench/ stack's celery worker processes"
    )
    parser.add_argument("--ceiling-messages", type=int, default=4000)
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine")
    args = parser.parse_args(argv)

    busy = wait_for_quiet(args.quiet_wait)
    log("preparing database and redis")
    prepare_database()
    flush_redis_and_metrics()
    shutil.rmtree(VAR_DIR, ignore_errors=True)
    VAR_DIR.mkdir(parents=True)
    results: dict = {"machine_busy_before": busy, "makerun_database": args.database, "makerun_env": args.env}
    stacks = ["makerun"] + ([] if args.no_bench_stack else ["bench"])
    for stack in stacks:
        results[stack] = in_child(stack, args)

    label = {"makerun": f"make run ({args.database}{', ' + ' '.join(args.env) if args.env else ''})",
             "bench": f"bench/ (PostgreSQL, worker -c {args.concurrency})"}  # fmt: skip
    rows = []
    for stack in stacks:
        for number, run in enumerate(results[stack], 1):
            cpu = run["cpu_ms_per_email"]
            rows.append(
                [f"{label[stack]} #{number}", run["arrived"], run["request_ms"], run["fan_out_done_s"], run["seconds"],
                 run["deliveries_per_second"], pct(run["deliveries_per_second"] / run["ceiling_1conn_per_second"]),
                 cpu.get("worker"), cpu.get("postgres") if stack == "bench" or args.database == "postgres" else None]
            )  # fmt: skip
    table = print_table(
        f"bench.makerun: one bulk send of {args.bulk:,} emails, request to last arrival at the sink",
        [
            "stack",
            "arrived",
            "request ms",
            "fan-out s",
            "seconds",
            "emails/s",
            "x ceil 1c",
            "worker ms/email",
            "PG ms/email",
        ],
        rows,
    )
    best = {stack: max(run["deliveries_per_second"] for run in results[stack]) for stack in stacks}
    summary = [summary_row("make-run stack bulk (best)", best["makerun"], "emails/s")]
    if "bench" in best:
        ratio = round(best["makerun"] / best["bench"], 3)
        results["makerun_over_bench"] = ratio
        summary += [
            summary_row("bench/ stack bulk (best)", best["bench"], "emails/s"),
            summary_row("make run / bench/", ratio, "", "~1", ratio >= 0.9),
        ]
    write_results("makerun", vars(args), results, summary, [table])
    return results


if __name__ == "__main__":
    main()
