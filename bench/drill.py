"""Fault drills: once the API has answered 202, a notification is delivered or visibly
dead-lettered, whatever crashes in between.

    .venv/bin/python -m bench.drill [kill|redis|smtp|all] [options]

Each drill runs the real system as subprocesses against its own database (`alertflow_drill`) and
its own redis-server on a free port (never the machine's shared one): gunicorn for the API, the
outbox relay, a Celery worker (`-Q default,email`, the product's default processes: 2 per core), beat with the database scheduler, and an
aiosmtpd sink in its own process that records every copy of every message. Timers are short (stale queued 10 s,
claim lease 15 s, sweep every 5 s, retry base 2 s, 10 attempts) so a drill takes minutes.

- kill:  a bulk send of 5,000; after ~1,000 arrived, `kill -9` the worker's process group,
         wait 3 s, start a new worker. Every message must arrive; duplicates are counted (a
         killed batch resends what it sent but had not recorded: at most FLUSH_EVERY per child).
- redis: single sends at 20/s for 40 s; the drill's Redis is stopped (SIGTERM) 5 s in and
         started again (empty) 30 s later. Every POST must answer 202 and every accepted
         message must arrive (the relay publishes what waited in the outbox, the sweeper
         what the restarted Redis lost).
- smtp:  single sends at 20/s for 25 s (500); after ~100 arrived the sink stops for 60 s, then
         starts again on the same port. Messages go `retrying` with backoff and must all
         arrive: none lost, none dead-lettered.

Prints a table and writes bench/results/drill.json. Process logs: var/bench/drill-*.log.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback

from .client import address, create_recipients, create_smtp_provider, email_send, register_tenant
from .drill_support import (
    APP_ROLES,
    DATABASE_URL,
    DB_NAME,
    PacedSender,
    SinkLog,
    Stack,
    db_snapshot,
    drill_env,
    drill_redis_port,
    tally,
)
from .env import cpu_busy, log, prepare_database, setup_django
from .processes import WORKER_CONCURRENCY, wait_for
from .report import latency_summary_ms, print_table, summary_row, write_results

DRILLS = ("kill", "redis", "smtp")


# --- Waiting for the end ------------------------------------------------------------------------


def settle(stack: Stack, tenant_id, accepted: set[str], sink: SinkLog, deadline: float, *, revive: bool) -> dict:
    """Wait until every accepted message is delivered or dead-lettered and nothing is in flight.

    Stops early when nothing is in flight and nothing changed for 10 s while some messages are
    still missing: then nothing will ever move them (they are lost). `deadline` is a
    `time.monotonic()` bound. Returns the final tally, snapshot and timings.
    """
    peak_retrying, quiet_since, last_key = 0, None, None
    settled = False
    while True:
        snap = db_snapshot(tenant_id)
        records = sink.read()
        result = tally(accepted, records, {to for to, *_ in snap["failed"]})
        peak_retrying = max(peak_retrying, snap["by_status"].get("retrying", 0))
        idle = snap["in_flight"] == 0 and snap["fanning_out"] == 0
        if idle and result["lost"] == 0:
            settled = True
            break
        key = (idle, result["delivered"], result["dead_lettered"], len(records))
        if idle and key == last_key:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 10:
                break
        else:
            quiet_since = None
        last_key = key
        if time.monotonic() >= deadline:
            break
        if revive:
            stack.revive()
        time.sleep(1)
    time.sleep(2)  # a late duplicate still counts
    snap = db_snapshot(tenant_id)
    records = sink.read()
    result = tally(accepted, records, {to for to, *_ in snap["failed"]})
    first_arrival: dict[str, float] = {}
    for record in records:
        for rcpt in record["rcpt"]:
            first_arrival.setdefault(rcpt, record["t"])
    ends = [t for rcpt, t in first_arrival.items() if rcpt in accepted]
    ends += [failed.timestamp() for to, failed, *_ in snap["failed"] if to in accepted and failed]
    return {
        **result,
        "settled": settled,
        "last_settled_at": max(ends) if ends else None,
        "statuses": snap["by_status"],
        "peak_retrying": max(peak_retrying, snap["by_status"].get("retrying", 0)),
        "max_attempts": snap["max_attempts"],
        "dead_letters": [
            {"to": to, "reason": reason, "attempts": attempts} for to, _failed, reason, attempts in snap["failed"][:20]
        ],
    }


def seconds_between(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 1)


# --- The drills ------------------------------------------------------------------------------------


def drill_kill(stack: Stack, tenant_id, api_key: str, args) -> dict:
    import httpx

    ids = create_recipients(tenant_id, args.messages, "kill-")
    accepted_at = time.time()
    response = httpx.post(
        f"{stack.base_url}/api/v1/notifications",
        headers={"Authorization": f"Bearer {api_key}"},
        json=email_send(recipients=ids),
        timeout=120,
    )
    if response.status_code != 202:
        raise RuntimeError(f"the bulk send answered {response.status_code}: {response.text[:500]}")
    accepted = {address(rid) for rid in ids}
    log(f"bulk send of {len(ids)} accepted in {time.time() - accepted_at:.1f}s; waiting for {args.kill_at} arrivals")
    sink = SinkLog(stack.sink_file)
    if not wait_for(lambda: len(sink.delivered_addresses()) >= args.kill_at, 120, interval=0.05):
        raise RuntimeError(f"only {len(sink.delivered_addresses())} arrivals after 120s; not killing")

    at_kill = len(sink.delivered_addresses())
    killed_at = time.time()
    members = stack.kill_group("worker")
    after_kill = db_snapshot(tenant_id)
    log(
        f"kill -9 of the worker group ({members} processes) with {at_kill} delivered; "
        f"statuses now {after_kill['by_status']}"
    )
    time.sleep(args.kill_pause)
    restarted_at = time.time()
    stack.start("worker")
    log(f"worker restarted (ready in {time.time() - restarted_at:.1f}s); waiting for the drain")
    end = settle(stack, tenant_id, accepted, sink, time.monotonic() + args.deadline, revive=False)
    from delivery.pipeline import FLUSH_EVERY

    return {
        **end,
        "fault": f"kill -9 worker group ({members} procs) at {at_kill} delivered, restart after {args.kill_pause}s",
        # Each killed child may have sent up to FLUSH_EVERY messages it had not yet recorded.
        "duplicate_bound": WORKER_CONCURRENCY * FLUSH_EVERY,
        "delivered_at_kill": at_kill,
        "statuses_after_kill": after_kill["by_status"],
        "drain_s": seconds_between(restarted_at, end["last_settled_at"]),
        "total_s": seconds_between(accepted_at, end["last_settled_at"]),
        "timeline": {"accepted": accepted_at, "killed": killed_at, "restarted": restarted_at},
        "ok": end["lost"] == 0 and end["dead_lettered"] == 0 and end["settled"],
    }


def drill_redis(stack: Stack, tenant_id, api_key: str, args) -> dict:
    total = int(args.rate * args.send_seconds)
    ids = create_recipients(tenant_id, total, "redis-")
    sink = SinkLog(stack.sink_file)
    sender = PacedSender(stack.base_url, api_key, ids, args.rate)
    sender.start()
    log(f"sending {total} single sends at {args.rate}/s; Redis stops in {args.redis_down_at}s")
    time.sleep(max(0.0, sender.started + args.redis_down_at - time.time()))
    down_at = time.time()
    stack.stop("redis")
    log(f"redis stopped (SIGTERM) with {len(sender.posts)} posts answered; back in {args.redis_outage}s")
    died = []
    while time.time() < down_at + args.redis_outage:
        # Watch, do not revive yet: a process that dies while Redis is away is a finding.
        for role in APP_ROLES:
            if not stack.alive(role) and role not in [d["role"] for d in died]:
                died.append({"role": role, "at": round(time.time() - down_at, 1)})
                log(f"{role} exited {time.time() - down_at:.1f}s into the Redis outage")
        time.sleep(0.5)
    up_at = time.time()
    stack.start("redis")
    log("redis started again (empty: no persistence)")
    stack.revive()
    if not sender.join(args.send_seconds + 120):
        log("some POSTs were still running at the join deadline")
    posts = list(sender.posts)
    accepted = {address(p.recipient) for p in posts if p.status == 202}
    during = [p for p in posts if down_at <= p.sent_at < up_at]
    non_202: dict[str, int] = {}
    for post in posts:
        if post.status != 202:
            key = str(post.status) if post.status is not None else post.error.split(":")[0]
            non_202[key] = non_202.get(key, 0) + 1
    log(f"{len(posts)} posts, {len(accepted)} accepted, non-202: {non_202 or 'none'}; waiting for the drain")
    end = settle(stack, tenant_id, accepted, sink, time.monotonic() + args.deadline, revive=True)
    latencies = [p.seconds for p in during]
    return {
        **end,
        "fault": f"redis down {args.redis_outage}s from t+{args.redis_down_at}s, {args.rate}/s single sends",
        "posts": len(posts),
        "answered_202": len(accepted),
        "non_202": non_202,
        "non_202_samples": [p.error for p in posts if p.status != 202][:5],
        "posts_during_outage": len(during),
        "accepted_during_outage": sum(1 for p in during if p.status == 202),
        "outage_latency_ms": latency_summary_ms(latencies),
        "all_latency_ms": latency_summary_ms([p.seconds for p in posts]),
        "send_window_s": round(max((p.sent_at for p in posts), default=sender.started) - sender.started, 1),
        "died_during_outage": died,
        "restarted": [{"role": e["role"], "exit_code": e["exit_code"], "log": e["log"]} for e in stack.events],
        "drain_s": seconds_between(up_at, end["last_settled_at"]),
        "timeline": {"first_post": sender.started, "redis_down": down_at, "redis_up": up_at},
        "ok": end["lost"] == 0 and not non_202 and end["settled"] and end["dead_lettered"] == 0,
    }


def drill_smtp(stack: Stack, tenant_id, api_key: str, args) -> dict:
    ids = create_recipients(tenant_id, args.smtp_messages, "smtp-")
    sink = SinkLog(stack.sink_file)
    sender = PacedSender(stack.base_url, api_key, ids, args.rate)
    sender.start()
    log(f"sending {len(ids)} single sends at {args.rate}/s; the sink stops after {args.smtp_stop_at} arrivals")
    wait_for(lambda: len(sink.delivered_addresses()) >= args.smtp_stop_at, 60, interval=0.05)
    at_stop = len(sink.delivered_addresses())
    down_at = time.time()
    stack.stop("sink")
    log(f"sink stopped with {at_stop} delivered; back in {args.smtp_outage}s")
    peak_retrying, died = 0, []
    while time.time() < down_at + args.smtp_outage:
        snap = db_snapshot(tenant_id)
        peak_retrying = max(peak_retrying, snap["by_status"].get("retrying", 0))
        for role in APP_ROLES:
            if not stack.alive(role) and role not in [d["role"] for d in died]:
                died.append({"role": role, "at": round(time.time() - down_at, 1)})
        time.sleep(1)
    during = db_snapshot(tenant_id)
    up_at = time.time()
    stack.start("sink")
    log(f"sink started again; statuses at its return {during['by_status']}, max attempts {during['max_attempts']}")
    stack.revive()
    sender.join(120)
    posts = list(sender.posts)
    accepted = {address(p.recipient) for p in posts if p.status == 202}
    non_202 = sum(1 for p in posts if p.status != 202)
    end = settle(stack, tenant_id, accepted, sink, time.monotonic() + args.retry_cap + 90, revive=True)
    end["peak_retrying"] = max(end["peak_retrying"], peak_retrying)
    return {
        **end,
        "fault": f"smtp sink down {args.smtp_outage}s after {at_stop} arrivals",
        "posts": len(posts),
        "non_202": non_202,
        "delivered_at_stop": at_stop,
        "statuses_at_sink_return": during["by_status"],
        "max_attempts_at_sink_return": during["max_attempts"],
        "died_during_outage": died,
        "restarted": [{"role": e["role"], "exit_code": e["exit_code"], "log": e["log"]} for e in stack.events],
        "drain_s": seconds_between(up_at, end["last_settled_at"]),
        "timeline": {"first_post": sender.started, "sink_down": down_at, "sink_up": up_at},
        "ok": end["lost"] == 0 and end["dead_lettered"] == 0 and non_202 == 0 and end["settled"],
    }


# --- Running them --------------------------------------------------------------------------------------


def run_drill(name: str, args, redis_port: int) -> dict:
    from django.db import connections

    extra = {}
    if name == "smtp":
        extra["ALERTFLOW_RETRY_MAX_SECONDS"] = str(args.retry_cap)
        if args.breaker_failures:
            extra["ALERTFLOW_BREAKER_FAILURES"] = str(args.breaker_failures)
    env = drill_env(redis_port, **extra)
    connections.close_all()
    log(f"[{name}] preparing database {DB_NAME} and redis-server on 127.0.0.1:{redis_port}")
    prepare_database(DB_NAME, DATABASE_URL, env)
    busy = cpu_busy()
    if busy > 0.25:
        log(f"[{name}] note: {busy:.0%} of the cores are busy with other work; drain times will show it")
    started = time.monotonic()
    with Stack(name, redis_port, env) as stack:
        tenant_id, api_key = register_tenant(stack.base_url, f"drill-{name}")
        create_smtp_provider(stack.base_url, api_key, stack.sink_port)
        log(f"[{name}] stack up: api {stack.base_url}, sink :{stack.sink_port}, tenant {tenant_id}")
        result = {"kill": drill_kill, "redis": drill_redis, "smtp": drill_smtp}[name](stack, tenant_id, api_key, args)
    result["run_s"] = round(time.monotonic() - started, 1)
    result["machine_busy_before"] = busy
    return result


def verdict(r: dict) -> str:
    """`ok`, or `ok, N restart(s)` when the drill had to restart a process that died on its own
    (the rule held only because a supervisor would restart it), or `FAIL`."""
    if not r["ok"]:
        return "FAIL"
    restarts = len(r.get("restarted") or [])
    return f"ok, {restarts} restart{'s' if restarts > 1 else ''}" if restarts else "ok"


def notes(name: str, r: dict) -> list[str]:
    if "error" in r:
        return [f"{name}: ERROR {r['error']}"]
    lines = [
        f"{name}: {r['fault']}; run {r['run_s']}s (cores busy before: {r['machine_busy_before']:.0%}); "
        f"final statuses {r['statuses']}"
    ]
    if name == "kill":
        lines.append(
            f"  statuses right after the kill: {r['statuses_after_kill']}; duplicates {r['duplicates']} "
            f"(bound {r['duplicate_bound']} = -c x FLUSH_EVERY), extra copies {r['extra_copies']}, "
            f"addresses with >1 message id {r['addresses_with_several_messages']}"
        )
        if r["duplicates"] > r["duplicate_bound"]:
            lines.append(
                "  duplicates above the bound: live claims lapsed (a batch went longer than "
                "ALERTFLOW_LEASE_SECONDS=15 without renewing on this machine), not only the killed ones"
            )
    if name == "redis":
        lines.append(
            f"  202: {r['answered_202']} of {r['posts']} POSTs ({r['accepted_during_outage']} of the "
            f"{r['posts_during_outage']} sent during the outage); non-202 {r['non_202'] or 0}; "
            f"latency during the outage ms {r['outage_latency_ms']}"
        )
        lines.append(
            f"  died during the outage: {r['died_during_outage'] or 'none'}; restarted by the drill: "
            f"{[e['role'] for e in r['restarted']] or 'none'}"
        )
    if name == "smtp":
        lines.append(
            f"  at the sink's return: {r['statuses_at_sink_return']} (max attempts {r['max_attempts_at_sink_return']}); "
            f"peak retrying {r['peak_retrying']}, max attempts at the end {r['max_attempts']}"
        )
    if r.get("stray"):
        lines.append(f"  stray: {r['stray']} message(s) received that were never accepted")
    if r.get("lost_sample"):
        lines.append(f"  lost (sample): {r['lost_sample']}")
    if r.get("dead_letters"):
        lines.append(f"  dead letters (sample): {r['dead_letters'][:3]}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drill", nargs="?", default="all", choices=[*DRILLS, "all"])
    parser.add_argument("--messages", type=int, default=5000, help="kill: recipients of the bulk send")
    parser.add_argument("--kill-at", type=int, default=1000, help="kill: arrivals before the kill")
    parser.add_argument("--kill-pause", type=float, default=3.0, help="kill: seconds before the restart")
    parser.add_argument("--rate", type=float, default=20.0, help="redis, smtp: single sends per second")
    parser.add_argument("--send-seconds", type=float, default=40.0, help="redis: how long the sends run")
    parser.add_argument("--redis-down-at", type=float, default=5.0, help="redis: seconds into the sends")
    parser.add_argument("--redis-outage", type=float, default=30.0)
    parser.add_argument("--smtp-messages", type=int, default=500)
    parser.add_argument("--smtp-stop-at", type=int, default=100, help="smtp: arrivals before the sink stops")
    parser.add_argument("--smtp-outage", type=float, default=60.0)
    parser.add_argument(
        "--retry-cap",
        type=int,
        default=128,
        help="smtp: ALERTFLOW_RETRY_MAX_SECONDS (bounds the drain after the sink returns; see the README)",
    )
    parser.add_argument(
        "--breaker-failures",
        type=int,
        default=0,
        help="smtp: ALERTFLOW_BREAKER_FAILURES (default: the product's); a huge value takes the breaker out",
    )
    parser.add_argument("--deadline", type=float, default=180.0, help="kill, redis: seconds allowed to drain")
    args = parser.parse_args(argv)
    selected = DRILLS if args.drill == "all" else (args.drill,)

    def terminate(signum, frame):
        raise SystemExit(128 + signum)  # unwinds through every `with Stack`: children are stopped

    signal.signal(signal.SIGTERM, terminate)
    redis_port = drill_redis_port()
    # This process only reads the database; its own log lines would drown the drill's.
    setup_django(drill_env(redis_port, LOG_LEVEL="WARNING"))

    results: dict[str, dict] = {}
    started = time.monotonic()
    for name in selected:
        try:
            results[name] = run_drill(name, args, redis_port)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "ok": False}
    elapsed = round(time.monotonic() - started, 1)

    headers = ["drill", "accepted", "delivered", "duplicates", "dead-lettered", "lost", "drain s", "verdict"]
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append([name, None, None, None, None, None, None, "ERROR"])
            continue
        rows.append(
            [
                name,
                r["accepted"],
                r["delivered"],
                r["duplicates"],
                r["dead_lettered"],
                r["lost"],
                r["drain_s"],
                verdict(r),
            ]
        )
    print()
    table = print_table(f"Fault drills (all processes real, {elapsed}s in all)", headers, rows)
    detail = [line for name, r in results.items() for line in notes(name, r)]
    print("\n".join(detail))
    print(
        "drain s: from the end of the fault (worker restarted, Redis back, sink back) to the last message "
        "delivered or dead-lettered. duplicates: messages received more than once."
    )
    summary = [
        summary_row(f"{name} lost", r.get("lost"), "messages", "0", r.get("lost") == 0) for name, r in results.items()
    ]
    write_results("drill", vars(args), results, summary, [table, "\n".join(detail)])
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
