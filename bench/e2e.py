"""End-to-end email deliveries per second: API accept -> queue -> worker -> SMTP -> the sink.

(a) `--singles` single sends POSTed through the API by `--clients` keep-alive clients (wrk, or
httpx threads with `--load httpx`) while a Celery worker consumes: from the first request to the
last email at the sink, plus each message's accept-to-arrival latency. (b) One bulk send to `--bulk` recipients in one request:
from the request to the last email at the sink. Both are given as a ratio to the sink's own
ceiling, measured in the same run with plain smtplib clients over 1 and 4 connections (the
aiosmtpd sink is itself a ceiling on this machine, DESIGN section 7).

    .venv/bin/python -m bench.e2e [--singles 2000] [--bulk 5000] [--concurrency 4]
"""

import argparse
import json
import time
from pathlib import Path

from .client import LOAD_GENERATORS, create_recipients, create_smtp_provider, email_send, register_tenant, run_generator
from .cpu import CpuMeter, PySpy
from .env import log, prepare
from .processes import WORKER_CONCURRENCY, Processes, free_port, start_gunicorn, start_relay, start_worker
from .report import latency_summary_ms, pct, print_table, summary_row, write_results
from .smtp import SmtpSink, measure_sink_ceiling

TARGET_BULK_RATIO = 0.70


def status_counts(notification_ids=None) -> dict:
    from django.db.models import Count

    from notifications.models import Message

    rows = Message.objects.all()
    if notification_ids is not None:
        rows = rows.filter(notification_id__in=notification_ids)
    return {row["status"]: row["n"] for row in rows.values("status").annotate(n=Count("id"))}


def run_singles(sink, procs, base_url, api_key, ids, count, clients, generator) -> dict:
    sink.reset()
    bodies = [email_send(recipient=ids[i % len(ids)]) for i in range(count)]
    run = run_generator(generator, base_url, api_key, bodies, clients)
    accepted = len(run.accepted)
    arrived_all = sink.wait_count(accepted, 300, procs)
    arrivals = sink.arrivals()
    by_id = {key: t for t, key, _ in arrivals}
    latencies = [by_id[mid] - sent for sent, mid in run.accepted if mid in by_id]
    last = max((t for t, _, _ in arrivals), default=run.finished)
    seconds = last - run.started
    return {
        "requests": count,
        "clients": clients,
        "load_generator": generator,
        "load_generator_cpu_ms_per_request": round(run.client_cpu * 1000 / max(1, len(run.latencies)), 2),
        "accepted": accepted,
        "request_errors": run.errors,
        "arrived": len(arrivals),
        "all_arrived": arrived_all,
        "accept_seconds": round(run.finished - run.started, 3),
        "accept_per_second": round(len(run.latencies) / (run.finished - run.started), 1),
        "seconds": round(seconds, 3),
        "deliveries_per_second": round(len(arrivals) / seconds, 1),
        "accept_to_arrival_ms": latency_summary_ms(latencies),
    }


def run_bulk(sink, procs, base_url, api_key, ids) -> dict:
    import httpx

    from notifications.models import Notification

    sink.reset()
    body = email_send(recipients=ids, priority="normal")
    started = time.time()
    response = httpx.post(
        f"{base_url}/api/v1/notifications", json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    )
    answered = time.time()
    response.raise_for_status()
    notification_id = response.json()["id"]
    fanned_out_at = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if fanned_out_at is None:
            status = Notification.objects.filter(pk=notification_id).values_list("status", flat=True).first()
            if status != Notification.Status.FANNING_OUT:
                fanned_out_at = time.time()
        if sink.count() >= len(ids):
            break
        procs.check()
        time.sleep(0.1)
    arrivals = sink.arrivals()
    times = sorted(t for t, _, _ in arrivals)
    last = times[-1] if times else answered
    seconds = last - started
    steady = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None
    return {
        "recipients": len(ids),
        "request_ms": round((answered - started) * 1000, 1),
        "fan_out_done_s": round(fanned_out_at - started, 3) if fanned_out_at else None,
        "first_arrival_s": round(times[0] - started, 3) if times else None,
        "arrived": len(arrivals),
        "all_arrived": len(arrivals) >= len(ids),
        "seconds": round(seconds, 3),
        "deliveries_per_second": round(len(arrivals) / seconds, 1),
        "first_to_last_per_second": round(steady, 1) if steady else None,
        "message_statuses": status_counts([notification_id]),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8, help="API clients for the single sends")
    parser.add_argument(
        "--load", choices=LOAD_GENERATORS, default=LOAD_GENERATORS[0], help="the single sends' load generator"
    )
    parser.add_argument("--bulk", type=int, default=5000)
    parser.add_argument(
        "--concurrency", type=int, default=WORKER_CONCURRENCY, help="celery worker processes (or threads)"
    )
    parser.add_argument("--pool", default="prefork", help="celery worker pool (-P): prefork, threads, solo")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--ceiling-messages", type=int, default=4000)
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine")
    parser.add_argument(
        "--celery-conf",
        type=json.loads,
        default=None,
        help="experiment: worker app settings as JSON, e.g. '{\"CELERY_DB_REUSE_MAX\": 1000}'",
    )
    parser.add_argument(
        "--py-spy", metavar="FILE", help="record the celery worker into FILE-singles and FILE-bulk (collapsed stacks)"
    )
    args = parser.parse_args(argv)
    if args.singles < 1 or args.bulk < 1:
        # Both parts always run: a bulk of 0 was refused by the API (400) only after the singles.
        parser.error("--singles and --bulk must be at least 1")

    busy = prepare(args.quiet_wait)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    results: dict = {"machine_busy_before": busy}
    with SmtpSink() as sink, Processes() as procs:
        log("sink ceiling: smtplib over 1 and 4 connections")
        ceilings = [
            measure_sink_ceiling(sink, 1, args.ceiling_messages),
            measure_sink_ceiling(sink, 4, args.ceiling_messages),
        ]
        log(f"starting gunicorn {args.workers}x{args.threads} and a worker -P {args.pool} -c {args.concurrency}")
        web = start_gunicorn(procs, port, args.workers, args.threads)
        relay = start_relay(procs)
        tenant_id, api_key = register_tenant(base_url)
        ids = create_recipients(tenant_id, max(args.bulk, args.singles))
        create_smtp_provider(base_url, api_key, sink.port)
        worker = start_worker(procs, "default,email", args.concurrency, args.celery_conf, pool=args.pool)
        pids = {"worker": worker.popen.pid, "gunicorn": web.popen.pid, "relay": relay.popen.pid, "sink": sink.pid}

        log(f"(a) {args.singles} single sends through the API, {args.clients} clients")
        spy = Path(args.py_spy) if args.py_spy else None
        with (
            PySpy(worker.popen.pid, spy.with_name(f"{spy.stem}-singles{spy.suffix}") if spy else None),
            CpuMeter(**pids) as singles_cpu,
        ):
            singles = run_singles(sink, procs, base_url, api_key, ids, args.singles, args.clients, args.load)
        log(f"(b) one bulk send to {args.bulk} recipients")
        with (
            PySpy(worker.popen.pid, spy.with_name(f"{spy.stem}-bulk{spy.suffix}") if spy else None),
            CpuMeter(**pids) as bulk_cpu,
        ):
            bulk = run_bulk(sink, procs, base_url, api_key, ids[: args.bulk])
        log("sink ceiling again, after the run")
        ceilings_after = [
            measure_sink_ceiling(sink, 1, args.ceiling_messages),
            measure_sink_ceiling(sink, 4, args.ceiling_messages),
        ]
        procs.check()
    results["all_statuses"] = status_counts()

    ceiling_1 = max(ceilings[0]["per_second"], ceilings_after[0]["per_second"])
    ceiling_4 = max(ceilings[1]["per_second"], ceilings_after[1]["per_second"])
    ceiling = max(ceiling_1, ceiling_4)
    for part, cpu in ((singles, singles_cpu), (bulk, bulk_cpu)):
        part["cpu_seconds"] = cpu.used
        part["new_postgres_sessions"] = cpu.new_pg_sessions
        part["cpu_ms_per_email"] = {
            name: round(seconds * 1000 / max(1, part["arrived"]), 2)
            for name, seconds in cpu.used.items()
            if name != "wall"
        }
        part["ratio_to_ceiling_1conn"] = round(part["deliveries_per_second"] / ceiling_1, 3)
        part["ratio_to_ceiling_4conn"] = round(part["deliveries_per_second"] / ceiling_4, 3)
    results.update(
        {
            "ceiling_before": ceilings,
            "ceiling_after": ceilings_after,
            "ceiling_1conn_per_second": ceiling_1,
            "ceiling_4conn_per_second": ceiling_4,
            "singles": singles,
            "bulk": bulk,
        }
    )
    lat = singles["accept_to_arrival_ms"]
    tables = [
        print_table(
            "bench.e2e: sink ceiling (plain smtplib, this run; best of before/after)",
            ["smtplib client", "msgs/s before", "msgs/s after"],
            [
                ["one connection", ceilings[0]["per_second"], ceilings_after[0]["per_second"]],
                ["four connections", ceilings[1]["per_second"], ceilings_after[1]["per_second"]],
            ],
        ),
        print_table(
            f"bench.e2e: email end to end, worker -Q default,email -P {args.pool} -c {args.concurrency} "
            "--prefetch-multiplier 1, "
            f"gunicorn {args.workers}x{args.threads}"
            + (f", worker conf {args.celery_conf}" if args.celery_conf else ""),
            ["run", "emails", "seconds", "deliveries/s", "x ceil 1c", "x ceil 4c", "all arrived"],
            [
                [
                    f"(a) {args.singles} singles via API ({args.clients} clients)",
                    singles["arrived"],
                    singles["seconds"],
                    singles["deliveries_per_second"],
                    pct(singles["ratio_to_ceiling_1conn"]),
                    pct(singles["ratio_to_ceiling_4conn"]),
                    singles["all_arrived"],
                ],
                [
                    f"(b) 1 bulk send x {args.bulk} via API",
                    bulk["arrived"],
                    bulk["seconds"],
                    bulk["deliveries_per_second"],
                    pct(bulk["ratio_to_ceiling_1conn"]),
                    pct(bulk["ratio_to_ceiling_4conn"]),
                    bulk["all_arrived"],
                ],
            ],
        ),
        print_table(
            "bench.e2e: details",
            ["figure", "value"],
            [
                ["(a) accept phase, req/s", singles["accept_per_second"]],
                ["(a) accept -> arrival p50 ms", lat["p50"]],
                ["(a) accept -> arrival p95 ms", lat["p95"]],
                ["(a) accept -> arrival p99 ms", lat["p99"]],
                ["(b) request answered, ms", bulk["request_ms"]],
                ["(b) fan-out done, s", bulk["fan_out_done_s"]],
                ["(b) first email, s", bulk["first_arrival_s"]],
                ["(b) first -> last email, msgs/s", bulk["first_to_last_per_second"]],
            ],
        ),
        print_table(
            "bench.e2e: CPU per email delivered, by process (the bench database's PostgreSQL backends included)",
            ["process", "(a) CPU s", "(a) ms/email", "(b) CPU s", "(b) ms/email"],
            [
                [
                    name,
                    singles_cpu.used[name],
                    singles["cpu_ms_per_email"].get(name),
                    bulk_cpu.used[name],
                    bulk["cpu_ms_per_email"].get(name),
                ]
                for name in singles_cpu.used
            ]
            + [
                ["(new PostgreSQL sessions)", singles_cpu.new_pg_sessions, None, bulk_cpu.new_pg_sessions, None],
                ["(machine busy before start)", pct(busy), None, None, None],
            ],
        ),
    ]
    ratio = bulk["deliveries_per_second"] / ceiling
    summary = [
        summary_row("singles end to end", singles["deliveries_per_second"], "emails/s"),
        summary_row("bulk end to end", bulk["deliveries_per_second"], "emails/s"),
        summary_row("sink ceiling (best)", ceiling, "emails/s"),
        summary_row("bulk / ceiling", round(ratio, 3), "", f">= {TARGET_BULK_RATIO}", ratio >= TARGET_BULK_RATIO),
    ]
    write_results("e2e", vars(args), results, summary, tables)
    return results


if __name__ == "__main__":
    main()
