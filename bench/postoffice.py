"""django-post_office beside AlertFlow's bulk send: one run, one SMTP sink, one PostgreSQL.

Issue 14 asks that AlertFlow's bulk email be faster than the mature Django email queue on the
same fake in the same run. Both deliver `--emails` templated emails to the same sink
(bench/smtp.py), alternately, `--rounds` times each:

- django-post_office (bench/requirements.txt; settings in bench/postoffice_settings.py, its own
  database `<BENCH_DB_NAME>_postoffice`): `mail.send_many` queues them (one template, a context
  per recipient, rendered at delivery), then `manage.py send_queued_mail --processes=2` (its
  defaults otherwise: batches of 100, 5 threads per process) sends them. Timed from the queueing
  to the last arrival, and the sending alone.
- AlertFlow: bench.e2e's bulk path, one `POST /api/v1/notifications` to that many recipients,
  with gunicorn, the outbox relay and `celery worker -Q default,email -c --concurrency`; timed from the request
  to the last arrival.

The sink's own ceiling (plain smtplib over 1 and 4 connections) is measured before and after.

    .venv/bin/python -m bench.postoffice [--emails 5000] [--rounds 1] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import time

from .client import create_recipients, create_smtp_provider, register_tenant
from .cpu import CpuMeter
from .e2e import TARGET_BULK_RATIO, run_bulk
from .env import (
    LOG_DIR,
    POSTOFFICE_DATABASE_URL,
    POSTOFFICE_DB_NAME,
    PYTHON,
    ROOT,
    bench_env,
    log,
    prepare,
    prepare_database,
)
from .processes import WORKER_CONCURRENCY, Processes, free_port, start_gunicorn, start_relay, start_worker
from .report import pct, print_table, summary_row, write_results
from .smtp import SmtpSink, measure_sink_ceiling

POSTOFFICE_PROCESSES = 2  # as issue 14 ran it


def postoffice_env(sink_port: int | None = None, batch_size: int | None = None) -> dict[str, str]:
    extra = {"DJANGO_SETTINGS_MODULE": "bench.postoffice_settings"}
    if sink_port is not None:
        extra["BENCH_SMTP_PORT"] = str(sink_port)
    if batch_size is not None:
        extra["BENCH_POSTOFFICE_BATCH_SIZE"] = str(batch_size)
    return bench_env(**extra)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(name: str, args: list[str], env: dict[str, str], timeout: float) -> float:
    """Run a child to its end (its output in var/bench/<name>.log); returns its CPU seconds,
    its own pool processes included (they are waited for, so counted in RUSAGE_CHILDREN)."""
    cpu = children_cpu_seconds()
    with (LOG_DIR / f"{name}.log").open("ab") as out:
        subprocess.run(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=timeout)
    return children_cpu_seconds() - cpu


def run_postoffice(sink: SmtpSink, count: int, batch_size: int | None) -> dict:
    """Queue `count` emails in django-post_office, send them with `send_queued_mail
    --processes=2`, and time both to the last arrival at the sink."""
    import psycopg

    env = postoffice_env(sink.port, batch_size)
    database = POSTOFFICE_DATABASE_URL.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE post_office_log, post_office_attachment_emails, post_office_email RESTART IDENTITY CASCADE"
        )
        conn.execute("TRUNCATE post_office_emailtemplate RESTART IDENTITY CASCADE")
    sink.reset()
    started = time.time()
    enqueue_cpu = run_child("postoffice-enqueue", [PYTHON, "-m", "bench.postoffice_enqueue", str(count)], env, 300)
    queued = time.time()
    send_cpu = run_child(
        "postoffice-send",
        [PYTHON, "-m", "django", "send_queued_mail", f"--processes={POSTOFFICE_PROCESSES}",
         "--lockfile", str(LOG_DIR / "postoffice-send")],
        env,
        600,
    )  # fmt: skip
    sink.wait_count(count, 60)
    times = sorted(t for t, _, _ in sink.arrivals())
    last = times[-1] if times else time.time()
    with psycopg.connect(database) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM post_office_email GROUP BY status").fetchall())
    return {
        "emails": count,
        "arrived": len(times),
        "all_arrived": len(times) >= count,
        "queue_seconds": round(queued - started, 3),
        "send_seconds": round(last - queued, 3),
        "seconds": round(last - started, 3),
        "deliveries_per_second": round(len(times) / (last - started), 1),
        "send_per_second": round(len(times) / (last - queued), 1),
        # post_office's status numbers: 0 sent, 1 failed, 2 queued, 3 requeued
        "statuses": {str(k): v for k, v in statuses.items()},
        "cpu_seconds": {"queueing": round(enqueue_cpu, 2), "send_queued_mail": round(send_cpu, 2)},
        "cpu_ms_per_email": {
            "queueing": round(enqueue_cpu * 1000 / max(1, len(times)), 2),
            "send_queued_mail": round(send_cpu * 1000 / max(1, len(times)), 2),
        },
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1, help="each side this many times, alternately")
    parser.add_argument(
        "--concurrency", type=int, default=WORKER_CONCURRENCY, help="AlertFlow's celery worker processes"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument(
        "--postoffice-batch-size", type=int, default=None, help="POST_OFFICE BATCH_SIZE (default: its own)"
    )
    parser.add_argument("--ceiling-messages", type=int, default=4000)
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("post_office") is None:
        parser.error("django-post_office is not installed: `make bench-deps` (bench/requirements.txt)")

    busy = prepare(args.quiet_wait)
    log(f"preparing database {POSTOFFICE_DB_NAME} for django-post_office")
    prepare_database(POSTOFFICE_DB_NAME, POSTOFFICE_DATABASE_URL, postoffice_env())

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    rounds: list[dict] = []
    with SmtpSink() as sink, Processes() as procs:
        log("sink ceiling: smtplib over 1 and 4 connections")
        ceilings = [measure_sink_ceiling(sink, n, args.ceiling_messages) for n in (1, 4)]
        log(f"starting gunicorn {args.workers}x{args.threads} and a worker -c {args.concurrency}")
        web = start_gunicorn(procs, port, args.workers, args.threads)
        relay = start_relay(procs)
        tenant_id, api_key = register_tenant(base_url)
        ids = create_recipients(tenant_id, args.emails)
        create_smtp_provider(base_url, api_key, sink.port)
        worker = start_worker(procs, "default,email", args.concurrency)
        for number in range(1, args.rounds + 1):
            log(f"round {number}: django-post_office, {args.emails} emails")
            postoffice = run_postoffice(sink, args.emails, args.postoffice_batch_size)
            log(f"round {number}: AlertFlow, one bulk send to {args.emails}")
            with CpuMeter(worker=worker.popen.pid, gunicorn=web.popen.pid, relay=relay.popen.pid) as cpu:
                alertflow = run_bulk(sink, procs, base_url, api_key, ids)
            alertflow["cpu_seconds"] = cpu.used
            alertflow["cpu_ms_per_email"] = {
                name: round(seconds * 1000 / max(1, alertflow["arrived"]), 2)
                for name, seconds in cpu.used.items()
                if name != "wall"
            }
            rounds.append({"postoffice": postoffice, "alertflow": alertflow})
        log("sink ceiling again, after the run")
        ceilings_after = [measure_sink_ceiling(sink, n, args.ceiling_messages) for n in (1, 4)]
        procs.check()

    ceiling = max(c["per_second"] for c in ceilings + ceilings_after)
    best_po = max(r["postoffice"]["deliveries_per_second"] for r in rounds)
    best_af = max(r["alertflow"]["deliveries_per_second"] for r in rounds)
    results = {
        "machine_busy_before": busy,
        "ceiling_before": ceilings,
        "ceiling_after": ceilings_after,
        "ceiling_per_second": ceiling,
        "rounds": rounds,
        "alertflow_over_postoffice": round(best_af / best_po, 3),
    }
    rows = []
    for number, r in enumerate(rounds, 1):
        po, af = r["postoffice"], r["alertflow"]
        rows.append(
            [f"{number}: django-post_office (queue + send_queued_mail -p 2)", po["arrived"], po["seconds"],
             po["deliveries_per_second"], pct(po["deliveries_per_second"] / ceiling),
             po["cpu_ms_per_email"]["send_queued_mail"]]
        )  # fmt: skip
        rows.append(
            [f"{number}: AlertFlow (1 bulk request, worker -c {args.concurrency})", af["arrived"], af["seconds"],
             af["deliveries_per_second"], pct(af["deliveries_per_second"] / ceiling),
             af["cpu_ms_per_email"]["worker"]]
        )  # fmt: skip
    tables = [
        print_table(
            "bench.postoffice: sink ceiling (plain smtplib, this run)",
            ["smtplib client", "msgs/s before", "msgs/s after"],
            [
                ["one connection", ceilings[0]["per_second"], ceilings_after[0]["per_second"]],
                ["four connections", ceilings[1]["per_second"], ceilings_after[1]["per_second"]],
            ],
        ),
        print_table(
            f"bench.postoffice: {args.emails} templated emails to one sink, start to last arrival",
            ["round: side", "arrived", "seconds", "emails/s", "x ceiling", "sender CPU ms/email"],
            rows,
        ),
        print_table(
            "bench.postoffice: details",
            [
                "round",
                "post_office queue s",
                "post_office send s",
                "post_office send-only/s",
                "AlertFlow request ms",
                "AlertFlow fan-out s",
                "AlertFlow / post_office",
            ],
            [
                [
                    n,
                    r["postoffice"]["queue_seconds"],
                    r["postoffice"]["send_seconds"],
                    r["postoffice"]["send_per_second"],
                    r["alertflow"]["request_ms"],
                    r["alertflow"]["fan_out_done_s"],
                    round(r["alertflow"]["deliveries_per_second"] / r["postoffice"]["deliveries_per_second"], 2),
                ]
                for n, r in enumerate(rounds, 1)
            ],
        ),
    ]
    ratio = best_af / ceiling
    summary = [
        summary_row("post_office end to end (best)", best_po, "emails/s"),
        summary_row("AlertFlow bulk end to end (best)", best_af, "emails/s"),
        summary_row("sink ceiling (best)", ceiling, "emails/s"),
        summary_row("AlertFlow / post_office", results["alertflow_over_postoffice"], "", "> 1", best_af > best_po),
        summary_row("AlertFlow / ceiling", round(ratio, 3), "", f">= {TARGET_BULK_RATIO}", ratio >= TARGET_BULK_RATIO),
    ]
    write_results("postoffice", vars(args), results, summary, tables)
    return results


if __name__ == "__main__":
    main()
