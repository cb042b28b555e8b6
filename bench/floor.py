"""Issue 14's floor: the trivial DRF endpoint it cites, measured as bench.accept measures ours.

The issue's reference ("a trivial DRF endpoint doing one INSERT and one Redis LPUSH served 745
req/s with p99 58 ms on gunicorn sync workers") as an app of bench/ alone (bench/floor_app,
settings bench/floor_settings.py, its own database `<BENCH_DB_NAME>_floor`): POST JSON -> a DRF
view, no middleware and no authentication -> a serializer -> one INSERT -> one LPUSH -> 202 JSON.
It is served by the same gunicorn, with sync workers (`--sync-workers`, as the issue ran it) and
then with bench.accept's gthread `--workers` x `--threads`, and driven by the same wrk (bench/wrk.lua)
with the same bodies from the same `--clients`. Per server: req/s, latency, errors, the rows and
LPUSHes against the 202s, and CPU ms per request of gunicorn, the floor database's PostgreSQL
backends, Redis (when on this machine, as in bench.accept) and wrk. wrk's threads send their share again
until the last one is done (`run_wrk(keep_sending=True)`: idle connections stall sync workers), so
the CPU is divided by every row written, past-share requests included.

The budget: AlertFlow's delivery must share the two cores with the accept. With `--with-accept`,
`bench.accept --worker` runs right after in the same command; the delivery's CPU per email there
(the worker, the relay, the SMTP sink, and the PostgreSQL backends of the worker's and the relay's
connections) is added to the floor's to give the cores 400 sends/s need with an accept that cost
no more than the floor.

    .venv/bin/python -m bench.floor [--requests 3000] [--clients 32] [--sync-workers 6] [--workers 3] [--threads 4] [--with-accept]
"""

from __future__ import annotations

import argparse
import random
import time

from . import accept
from .client import email_send, run_wrk
from .cpu import CpuMeter, redis_server_pid
from .env import (
    FLOOR_DATABASE_URL,
    FLOOR_DB_NAME,
    REDIS_URL,
    bench_env,
    flush_redis_and_metrics,
    log,
    prepare_database,
    wait_for_quiet,
)
from .processes import Processes, free_port, start_gunicorn
from .report import latency_summary_ms, pct, print_table, summary_row, write_results

# gunicorn's factory syntax: Django's WSGI handler for DJANGO_SETTINGS_MODULE, no wsgi.py needed.
FLOOR_WSGI = ("django.core.wsgi:get_wsgi_application()",)
CORES = 2  # this box's


def floor_env() -> dict[str, str]:
    return bench_env(DJANGO_SETTINGS_MODULE="bench.floor_settings")


def counts() -> tuple[int, int]:
    """(rows in the floor's table, entries in its Redis list)."""
    import psycopg
    import redis

    from .floor_app import QUEUE_KEY

    with psycopg.connect(FLOOR_DATABASE_URL.replace("postgres://", "postgresql://", 1)) as conn:
        rows = conn.execute("SELECT count(*) FROM floor_app_event").fetchone()[0]
    return rows, redis.Redis.from_url(REDIS_URL).llen(QUEUE_KEY)


def measure(server: str, workers: int, threads: int, args, bodies) -> dict:
    """The floor served by gunicorn `server` (worker class) `workers` x `threads`: a warm-up,
    then `args.requests` requests from `args.clients` wrk connections."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with Processes() as procs:
        log(f"floor: starting gunicorn {server} {workers}x{threads} on {base_url}")
        web = start_gunicorn(procs, port, workers, threads, server, wsgi=FLOOR_WSGI, env=floor_env())
        # wrk sends bench.accept's Authorization header too: the floor ignores it. keep_sending:
        # sync workers would otherwise stall on the idle connections of the threads done first.
        warm = run_wrk(base_url, "none", bodies(args.warmup), args.clients, keep_sending=True)
        log(f"floor: measuring {args.requests} requests, {args.clients} clients (wrk)")
        rows_before, pushed_before = counts()
        pids = {"gunicorn": web.popen.pid}
        if (redis_pid := redis_server_pid()) is not None:
            pids["redis"] = redis_pid
        with CpuMeter(database=FLOOR_DB_NAME, **pids) as cpu:
            run = run_wrk(base_url, "none", bodies(args.requests), args.clients, keep_sending=True)
            # The requests in flight when wrk stopped finish: the CPU and the rows then count
            # the same requests.
            time.sleep(0.5)
        rows, pushed = counts()
        procs.check()
    accepted = len(run.latencies)
    served = rows - rows_before  # the 202s, the threads' requests past their share, any in flight at the stop
    cpu.used["load generator"] = round(run.client_cpu, 2)
    per_request = {name: round(s * 1000 / max(1, served), 2) for name, s in cpu.used.items() if name != "wall"}
    all_ms = round(sum(per_request.values()), 2)
    seconds = run.finished - run.started
    return {
        "server": f"{server} {workers}x{threads}",
        "requests": args.requests,
        "accepted": accepted,
        "past_share": run.extra,
        "rows": served,
        "lpushes": pushed - pushed_before,
        "errors": sum(run.errors.values()),
        "errors_by_kind": run.errors,
        "warmup_errors": sum(warm.errors.values()),
        "seconds": round(seconds, 3),
        # Every response in the window, the threads' past their share too: the server's rate.
        "per_second": round((accepted + run.extra) / seconds, 1),
        "latency_ms": run.latency_ms or latency_summary_ms(run.latencies),
        "cpu_seconds": cpu.used,
        "cpu_ms_per_request": per_request,
        "all_processes_ms": all_ms,
        "idle_two_core_estimate_per_second": round(CORES * 1000 / all_ms, 1) if all_ms else None,
        # How much of the box the run kept busy: short of 2, the rest waited (or was not counted).
        "cores_used": round(all_ms * served / 1000 / seconds, 2),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--sync-workers", type=int, default=6, help="gunicorn sync workers (as session 4 ran sync)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn gthread workers (bench.accept's)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn gthread threads per worker")
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine")
    parser.add_argument(
        "--with-accept",
        action="store_true",
        help="then run bench.accept --worker (same --requests, --clients) for the delivery's CPU per email",
    )
    args = parser.parse_args(argv)

    busy = wait_for_quiet(args.quiet_wait)
    log(f"preparing database {FLOOR_DB_NAME} and redis")
    prepare_database(FLOOR_DB_NAME, FLOOR_DATABASE_URL, floor_env())
    flush_redis_and_metrics()
    rng = random.Random(1)
    recipients = [f"r{i:06d}" for i in range(1000)]  # bench.accept's ids (client.create_recipients)

    def bodies(n: int) -> list[dict]:
        return [email_send(recipient=rng.choice(recipients)) for _ in range(n)]

    servers = [
        measure("sync", args.sync_workers, 1, args, bodies),
        measure("gthread", args.workers, args.threads, args, bodies),
    ]
    results: dict = {"machine_busy_before": busy, "servers": servers}
    tables = [
        print_table(
            f"bench.floor: the reference endpoint (DRF, one INSERT, one LPUSH), {args.clients} clients, wrk",
            [
                "gunicorn",
                "requests",
                "202s",
                "past share",
                "rows",
                "LPUSHes",
                "req/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "errors",
            ],
            [
                [
                    s["server"],
                    s["requests"],
                    s["accepted"],
                    s["past_share"],
                    s["rows"],
                    s["lpushes"],
                    s["per_second"],
                    *(s["latency_ms"][key] for key in ("p50", "p95", "p99", "max")),
                    s["errors"],
                ]
                for s in servers
            ],
        ),
        print_table(
            "bench.floor: CPU ms per request",
            ["process", *(s["server"] for s in servers)],
            [[name, *(s["cpu_ms_per_request"][name] for s in servers)] for name in servers[0]["cpu_ms_per_request"]]
            + [
                ["(all of the above)", *(s["all_processes_ms"] for s in servers)],
                ["(2 idle cores / that = req/s estimate)", *(s["idle_two_core_estimate_per_second"] for s in servers)],
                ["(cores used: that x requests / load window)", *(s["cores_used"] for s in servers)],
                ["(wall clock s)", *(s["cpu_seconds"]["wall"] for s in servers)],
                ["(machine busy before start)", pct(busy), None],
            ],
        ),
    ]
    floor_ms = min(s["all_processes_ms"] for s in servers)
    summary = [
        summary_row(f"floor req/s, {s['server']}", s["per_second"], "req/s", f">= {accept.TARGET_RATE}")
        for s in servers
    ] + [
        summary_row(f"floor p99, {s['server']}", s["latency_ms"]["p99"], "ms", f"<= {accept.TARGET_P99_MS}")
        for s in servers
    ]
    summary.append(summary_row("floor CPU per request, all processes (the cheaper server)", floor_ms, "ms"))

    budget = {"floor_ms": floor_ms, "floor_cores_at_target": round(accept.TARGET_RATE * floor_ms / 1000, 2)}
    budget_rows = [
        ["floor accept, all processes (the cheaper server), ms/request", floor_ms],
        [f"cores the floor alone needs at {accept.TARGET_RATE}/s", budget["floor_cores_at_target"]],
    ]
    if args.with_accept:
        log("bench.accept --worker, for the delivery's CPU per email")
        alertflow = accept.main(
            ["--requests", str(args.requests), "--warmup", str(args.warmup), "--clients", str(args.clients),
             "--quiet-wait", str(args.quiet_wait), "--worker"]
        )  # fmt: skip
        per_send = alertflow["cpu_ms_per_request"]
        postgres_of = alertflow["postgres_cpu_ms_per_request_by_client"]
        # What only the delivery runs: the worker, the relay, the SMTP sink (on this box during
        # the goal's measure), and the PostgreSQL backends of the worker's and relay's connections.
        delivery_ms = round(
            sum(per_send.get(name, 0.0) + postgres_of.get(name, 0.0) for name in ("worker", "relay"))
            + per_send.get("sink", 0.0),
            2,
        )
        cores = round(accept.TARGET_RATE * (floor_ms + delivery_ms) / 1000, 2)
        # Redis serves the accept and the delivery alike (throttle, outbox, broker), one process:
        # not separable, so all of AlertFlow's Redis per send on top gives an upper bound.
        redis_ms = per_send.get("redis", 0.0)
        cores_with_redis = round(accept.TARGET_RATE * (floor_ms + delivery_ms + redis_ms) / 1000, 2)
        alertflow_ms = round(sum(per_send.values()), 2)
        budget.update(
            {
                "accept_machine_busy_before": alertflow["machine_busy_before"],
                "accept_per_second": alertflow["accepted_per_second"],
                "accept_p99_ms": alertflow["latency_ms"]["p99"],
                "accept_cpu_ms_per_send": per_send,
                "accept_all_processes_ms": alertflow_ms,
                "delivery_ms": delivery_ms,
                "cores_at_target": cores,
                "max_per_second_on_two_cores": round(CORES * 1000 / (floor_ms + delivery_ms), 1),
                "alertflow_redis_ms": redis_ms,
                "cores_at_target_with_alertflow_redis": cores_with_redis,
            }
        )
        results["alertflow_accept"] = alertflow
        budget_rows += [
            ["AlertFlow accept --worker, all processes, ms/send (same run)", alertflow_ms],
            ["delivery: worker + relay + sink + their PostgreSQL, ms/email", delivery_ms],
            [f"cores a floor accept + this delivery need at {accept.TARGET_RATE}/s", cores],
            ["sends/s that fit 2 idle cores at that cost", budget["max_per_second_on_two_cores"]],
            ["AlertFlow's Redis per send, accept's and delivery's (same run), ms", redis_ms],
            [f"cores at {accept.TARGET_RATE}/s with all of that Redis too (upper bound)", cores_with_redis],
            ["(machine busy before bench.accept)", pct(alertflow["machine_busy_before"])],
        ]
        summary.append(
            summary_row(
                f"cores for floor accept + delivery at {accept.TARGET_RATE}/s",
                cores,
                "cores",
                f"<= {CORES}",
                cores <= CORES,
            )
        )
    results["budget"] = budget
    tables.append(
        print_table(
            f"bench.floor: the budget of {accept.TARGET_RATE} sends/s on {CORES} cores",
            ["figure", "value"],
            budget_rows,
        )
    )
    write_results("floor", vars(args), results, summary, tables)
    return results


if __name__ == "__main__":
    main()
