"""How long a message waits behind a backlog: the priority steps at work (DESIGN section 4).

Each round: the worker stops consuming `email` (Celery's cancel_consumer), a `low` bulk send to
`--backlog` recipients is accepted and fanned out, so its batches sit in the email queue at the
bulk step (low + BATCH_PRIORITY_OFFSET); the worker resumes, and once the drain is under way
probes are sent one at a time, each timed from just before its request to its arrival at the
sink:

- `critical` single send (step 0) and `normal` single send (step 2): should overtake;
- `critical` as a 1-recipient bulk (batch step 1): overtakes too, one fan-out task later;
- `low` as a 1-recipient bulk: the same step as the backlog, the control: waits for it all.

    .venv/bin/python -m bench.priority [--rounds 3] [--backlog 5000] [--concurrency 4]
"""

import argparse
import statistics
import time

import httpx

from .client import create_recipients, create_smtp_provider, email_send, register_tenant
from .env import REDIS_URL, log, prepare
from .processes import Processes, free_port, start_gunicorn, start_relay, start_worker, wait_until, worker_hostname
from .report import print_table, summary_row, write_results
from .smtp import SmtpSink

TARGET_CRITICAL_S = 2.0
PROBES = [
    # (name, priority, as a 1-recipient bulk?)
    ("critical single", "critical", False),
    ("normal single", "normal", False),
    ("critical bulk of 1", "critical", True),
    ("critical single (2nd)", "critical", False),
    ("low bulk of 1 (control)", "low", True),
]


def queue_steps() -> dict:
    """Which Redis list each (queue, priority) pair lands in, from the product's constants."""
    from alertflow.queues import BATCH_PRIORITY_OFFSET, PRIORITY_LEVELS

    return {
        "single": dict(PRIORITY_LEVELS),
        "batch": {name: level + BATCH_PRIORITY_OFFSET for name, level in PRIORITY_LEVELS.items()},
    }


def set_email_consumer(on: bool) -> None:
    from alertflow.queues import CHANNEL_QUEUES
    from config.celery import app

    destination = [worker_hostname()]
    if on:
        replies = app.control.add_consumer(CHANNEL_QUEUES["email"], destination=destination, reply=True, timeout=5)
    else:
        replies = app.control.cancel_consumer(CHANNEL_QUEUES["email"], destination=destination, reply=True, timeout=5)
    if not replies:
        raise RuntimeError(f"the worker did not answer {'add' if on else 'cancel'}_consumer")


def broker_depth() -> dict:
    """Tasks waiting in the email queue's Redis lists, per priority step."""
    import redis

    from alertflow.queues import CHANNEL_QUEUES, PRIORITY_STEPS

    client = redis.Redis.from_url(REDIS_URL)
    queue = CHANNEL_QUEUES["email"]
    return {step: client.llen(queue if step == 0 else f"{queue}:{step}") for step in PRIORITY_STEPS}


def send(client: httpx.Client, body: dict) -> None:
    response = client.post("/api/v1/notifications", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"send refused: {response.status_code} {response.text[:300]}")


def run_round(number, sink, procs, client, backlog_ids, probe_ids, args) -> list[dict]:
    from notifications.models import Notification

    sink.reset()
    set_email_consumer(False)
    response = client.post("/api/v1/notifications", json=email_send(recipients=backlog_ids, priority="low"))
    response.raise_for_status()
    notification_id = response.json()["id"]
    wait_until(
        lambda: Notification.objects.filter(pk=notification_id, status=Notification.Status.FANNING_OUT).count() == 0,
        120,
        "the backlog's fan-out",
        interval=0.2,
        procs=procs,
    )
    depth = broker_depth()
    log(f"round {number}: backlog fanned out, email queue tasks per step {depth}; resuming the consumer")
    set_email_consumer(True)
    sink.wait_count(args.drain_before_probe, 60, procs)

    rows = []
    for (name, priority, bulk), recipient in zip(PROBES, probe_ids, strict=True):
        address = f"{recipient}@bench.test"
        body = (
            email_send(recipients=[recipient], priority=priority)
            if bulk
            else email_send(recipient=recipient, priority=priority)
        )
        delivered_before = sink.count()
        started = time.time()
        send(client, body)
        arrived = sink.wait_for(lambda item, address=address: item[2] == address, args.probe_timeout)
        rows.append(
            {
                "round": number,
                "probe": name,
                "priority": priority,
                "bulk": bulk,
                "backlog_left": max(0, len(backlog_ids) - delivered_before),
                "wait_s": round(arrived - started, 3) if arrived else None,
            }
        )
        log(f"round {number}: {name}: {rows[-1]['wait_s']} s with {rows[-1]['backlog_left']} backlog emails left")
    sink.wait_count(len(backlog_ids) + len(PROBES), 120, procs)
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4, help="celery worker processes")
    parser.add_argument("--drain-before-probe", type=int, default=200, help="emails delivered before probing")
    parser.add_argument("--probe-timeout", type=float, default=120)
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine")
    args = parser.parse_args(argv)

    busy = prepare(args.quiet_wait)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    rows: list[dict] = []
    with SmtpSink() as sink, Processes() as procs:
        start_gunicorn(procs, port, 2, 4)
        start_relay(procs)
        tenant_id, api_key = register_tenant(base_url)
        backlog_ids = create_recipients(tenant_id, args.backlog)
        probe_ids = [f"probe{r}-{p}" for r in range(args.rounds) for p in range(len(PROBES))]
        from preferences.models import Recipient

        Recipient.objects.bulk_create(
            [Recipient(tenant_id=tenant_id, external_id=rid, email=f"{rid}@bench.test") for rid in probe_ids]
        )
        create_smtp_provider(base_url, api_key, sink.port)
        start_worker(procs, "default,email", args.concurrency)
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            for number in range(args.rounds):
                ids = probe_ids[number * len(PROBES) : (number + 1) * len(PROBES)]
                rows.extend(run_round(number + 1, sink, procs, client, backlog_ids, ids, args))
        procs.check()

    steps = queue_steps()
    by_probe: dict[str, list[float]] = {}
    for row in rows:
        if row["wait_s"] is not None:
            by_probe.setdefault(row["probe"], []).append(row["wait_s"])
    table_rows = []
    for name, priority, bulk in PROBES:
        waits = by_probe.get(name, [])
        step = steps["batch" if bulk else "single"][priority]
        lost = sum(1 for r in rows if r["probe"] == name and r["wait_s"] is None)
        table_rows.append(
            [name, step, len(waits), statistics.median(waits) if waits else None, max(waits, default=None), lost]
        )
    backlog_step = steps["batch"]["low"]
    tables = [
        print_table(
            f"bench.priority: wait behind a {args.backlog}-email low bulk backlog (batch step {backlog_step}), "
            f"{args.rounds} rounds, worker -c {args.concurrency}",
            ["probe", "redis step", "n", "median s", "max s", "timeouts"],
            table_rows,
        ),
        print_table(
            "bench.priority: every probe",
            ["round", "probe", "backlog left", "wait s"],
            [[r["round"], r["probe"], r["backlog_left"], r["wait_s"]] for r in rows],
        ),
    ]
    critical = by_probe.get("critical single", []) + by_probe.get("critical single (2nd)", [])
    critical_max = max(critical, default=None)
    summary = [
        summary_row(
            "critical behind backlog, median",
            round(statistics.median(critical), 3) if critical else None,
            "s",
        ),
        summary_row(
            "critical behind backlog, max",
            critical_max,
            "s",
            f"<= {TARGET_CRITICAL_S}",
            critical_max is not None and critical_max <= TARGET_CRITICAL_S,
        ),
        summary_row(
            "same-step control, median",
            round(statistics.median(by_probe["low bulk of 1 (control)"]), 3)
            if by_probe.get("low bulk of 1 (control)")
            else None,
            "s",
        ),
    ]
    results = {"machine_busy_before": busy, "steps": steps, "probes": rows}
    write_results("priority", vars(args), results, summary, tables)
    return results


if __name__ == "__main__":
    main()
