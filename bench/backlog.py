"""Does the sweeper amplify a backlog? The broker's queue length while a long backlog drains.

`--messages` transactional emails (one task each) are written as `queued` and published, then a
stand-in for a slow worker takes `--drain` tasks a second off the email queue and claims their
messages (nothing is delivered), while the sweeper (`delivery.timers.sweep_stale`, called
directly every `--sweep-every` seconds) runs with `ALERTFLOW_STALE_QUEUED_SECONDS` lowered to
`--stale` seconds, so the whole backlog is "stale" within the run. A sweeper that re-publishes
every message queued longer than that adds the backlog to the broker again on each sweep; one
that re-publishes only lost publishes leaves the queue to drain. `--lose` messages are written
but never published (the broker lost them: a Redis restarted without its data): the sweeper
must find those.

    .venv/bin/python -m bench.backlog [--messages 20000] [--seconds 30] [--drain 300]
"""

import argparse
import base64
import json
import time
import uuid
from datetime import timedelta

from .client import create_recipients
from .env import REDIS_URL, log, prepare
from .report import print_table, summary_row, write_results


def email_lists() -> list[str]:
    """The Redis lists of the email queue, one per priority step (kombu's `queue:step` names)."""
    from alertflow.queues import CHANNEL_QUEUES, PRIORITY_STEPS

    queue = CHANNEL_QUEUES["email"]
    return [queue if step == 0 else f"{queue}:{step}" for step in PRIORITY_STEPS]


def write_backlog(count: int, lost: int) -> tuple[list, list]:
    """`count` queued single emails to as many recipients, and `lost` more never published."""
    from notifications.models import Message, Notification
    from preferences.models import Recipient
    from tenants.models import Tenant

    tenant = Tenant.objects.create(name="backlog")
    recipient_ids = create_recipients(tenant.id, count + lost)
    recipients = dict(Recipient.objects.filter(tenant=tenant).values_list("external_id", "pk"))
    notification = Notification.objects.create(tenant=tenant, channels=["email"], content={})
    messages = [
        Message(
            id=uuid.uuid4(),
            tenant=tenant,
            notification=notification,
            recipient_id=recipients[rid],
            channel="email",
            status=Message.Status.QUEUED,
            to=f"{rid}@bench.test",
        )
        for rid in recipient_ids
    ]
    # The lost ones were queued a minute before the backlog (the broker lost their tasks):
    # queued at the same moment as the backlog, nothing could tell them apart
    # from it until the backlog has drained.
    for message in messages[count:]:
        message.updated = message.created = message.created - timedelta(minutes=1)
    Message.objects.bulk_create(messages, batch_size=2000)
    return messages[:count], messages[count:]


def take(client, lists: list[str], count: int) -> list[str]:
    """Pop up to `count` tasks the way the worker does (highest step first, oldest first) and
    return the message ids they carry."""
    ids: list[str] = []
    taken = 0
    for name in lists:
        while taken < count:
            raw = client.rpop(name)
            if raw is None:
                break
            taken += 1
            # A single send's task carries one id, a batch of singles (the relay's) a list.
            [carried] = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
            ids.extend(carried if isinstance(carried, list) else [carried])
    return ids


def claim(ids: list[str]) -> int:
    """What the worker's claim does to them: only a `queued` message moves (a duplicate task
    claims nothing). Sent at once: nothing is delivered here."""
    from notifications.models import Message

    if not ids:
        return 0
    return Message.objects.filter(pk__in=ids, status=Message.Status.QUEUED).update(status=Message.Status.SENT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--lose", type=int, default=50, help="messages written but never published")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--drain", type=int, default=300, help="tasks the stand-in worker takes per second")
    parser.add_argument("--stale", type=int, default=5, help="ALERTFLOW_STALE_QUEUED_SECONDS for the run")
    parser.add_argument("--sweep-every", type=float, default=2.0)
    parser.add_argument("--label", default="", help="a name for this run in the results file (before/after)")
    parser.add_argument("--quiet-wait", type=float, default=30.0)
    args = parser.parse_args()

    busy = prepare(args.quiet_wait)
    import redis
    from django.conf import settings

    from delivery import timers
    from notifications import queue
    from notifications.models import Message

    settings.ALERTFLOW_STALE_QUEUED_SECONDS = args.stale
    client = redis.Redis.from_url(REDIS_URL)
    lists = email_lists()

    log(f"writing {args.messages:,} queued messages (+{args.lose} never published)")
    published, lost = write_backlog(args.messages, args.lose)
    started = time.monotonic()
    queue.enqueue_on_commit(published)  # autocommit: committed at once
    queue.relay_all()
    log(f"published {len(published):,} tasks in {time.monotonic() - started:.1f} s")

    samples = []
    started = time.monotonic()
    next_sweep = started + args.sweep_every
    swept_total = 0
    while (elapsed := time.monotonic() - started) < args.seconds:
        second_started = time.monotonic()
        claim(take(client, lists, args.drain))
        swept = None
        if time.monotonic() >= next_sweep:
            swept = timers.sweep_stale()["messages"]
            swept_total += swept
            next_sweep += args.sweep_every
        samples.append(
            {
                "t": round(elapsed, 1),
                "broker_length": sum(client.llen(name) for name in lists),
                "queued_in_db": Message.objects.filter(status=Message.Status.QUEUED).count(),
                "republished": swept,
            }
        )
        time.sleep(max(0.0, 1.0 - (time.monotonic() - second_started)))

    # A lost publish is found when the sweeper published it: it was claimed, or it waits now.
    waiting = {
        json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0]
        for name in lists
        for raw in client.lrange(name, 0, -1)
    }
    claimed = set(
        Message.objects.filter(pk__in=[m.pk for m in lost])
        .exclude(status=Message.Status.QUEUED)
        .values_list("pk", flat=True)
    )
    lost_found = sum(1 for m in lost if m.pk in claimed or str(m.pk) in waiting)
    rows = [[s["t"], s["broker_length"], s["queued_in_db"], s["republished"]] for s in samples]
    title = (
        f"bench.backlog {args.label}: {args.messages:,} queued, worker takes {args.drain}/s, "
        f"stale after {args.stale} s, sweep every {args.sweep_every} s"
    )
    table = print_table(title, ["t (s)", "broker length", "queued in DB", "re-published"], rows)
    peak = max(s["broker_length"] for s in samples)
    print(
        f"peak broker length {peak:,} (backlog {args.messages:,}); re-published {swept_total:,}; "
        f"lost publishes found {lost_found}/{len(lost)}"
    )
    summary = [
        summary_row("peak broker length", peak, "tasks", f"<= {args.messages:,}", peak <= args.messages),
        summary_row("re-published by the sweeper", swept_total, "messages"),
    ]
    write_results(
        f"backlog{'-' + args.label if args.label else ''}",
        {**vars(args), "cpu_busy_before": busy},
        {"samples": samples, "republished": swept_total, "peak": peak, "lost_recovered": lost_found},
        summary,
        [table],
    )


if __name__ == "__main__":
    main()
