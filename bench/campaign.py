"""A campaign to `--recipients` (100,000) recipients, triggered by celery beat, end to end.

A one-off campaign (`{"at": now + --lead s}`) to every recipient is created through the API;
beat (django-celery-beat's database scheduler) triggers it; a worker on the `default` queue
(`-c 1`, so one process does the whole fan-out) writes its messages page by page; workers on the
`email` queue deliver them to the SMTP sink. Measured: from the run's start to every message
queued (fan-out done), and to every email at the sink, that rate as a ratio to the sink's own
ceiling measured in the same run (plain smtplib over 1 and 4 connections, before and after),
and the fan-out worker process's peak resident memory (`VmHWM`) against its size before.

    .venv/bin/python -m bench.campaign [--recipients 100000] [--email-concurrency 3]
"""

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .client import create_recipients, create_smtp_provider, register_tenant
from .cpu import CpuMeter
from .env import PYTHON, log, prepare
from .processes import Processes, free_port, start_gunicorn, start_relay, start_worker
from .report import pct, print_table, summary_row, write_results
from .smtp import SmtpSink, measure_sink_ceiling

TARGET_RATIO = 0.70


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def memory_kib(pid: int) -> dict:
    """The process's resident memory now (`VmRSS`) and at its peak (`VmHWM`), in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def run_campaign(base_url, api_key, sink, procs, fan_out_pid, recipients, lead, timeout) -> dict:
    import httpx

    from notifications.models import CampaignRun, Notification

    headers = {"Authorization": f"Bearer {api_key}"}
    template = {"email": {"subject": "Bench {{ recipient.id }}", "text": "Hello."}}
    httpx.post(
        f"{base_url}/api/v1/templates", json={"code": "bench", "name": "Bench", "channels": template}, headers=headers
    ).raise_for_status()
    at = datetime.now(UTC) + timedelta(seconds=lead)
    response = httpx.post(
        f"{base_url}/api/v1/campaigns",
        json={
            "name": "bench",
            "template": "bench",
            "channels": ["email"],
            "audience": {"all": True},
            "schedule": {"at": at.isoformat()},
        },
        headers=headers,
        timeout=30,
    )
    response.raise_for_status()
    campaign = response.json()
    sink.reset()
    child = children(fan_out_pid)[0]
    before = memory_kib(child)
    rss_samples = []
    run = None
    queued_at = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check()
        if run is None:
            run = CampaignRun.objects.filter(campaign_id=campaign["id"]).select_related("notification").first()
        elif queued_at is None:
            rss_samples.append(memory_kib(child)["VmRSS"])
            status = Notification.objects.filter(pk=run.notification_id).values_list("status", flat=True).get()
            if status == Notification.Status.ACCEPTED:
                queued_at = time.time()
        if queued_at and sink.count() >= recipients:
            break
        time.sleep(0.25)
    if run is None:
        raise TimeoutError("beat never started the campaign's run")
    after = memory_kib(child)
    arrivals = sink.arrivals()
    times = sorted(t for t, _, _ in arrivals)
    started = run.started.timestamp()
    last = times[-1] if times else time.time()
    progress = httpx.get(f"{base_url}/api/v1/campaigns/{campaign['id']}/runs", headers=headers, timeout=60).json()
    return {
        "recipients": recipients,
        "scheduled_at": at.isoformat(),
        "beat_trigger_delay_s": round(started - at.timestamp(), 3),
        "audience_size": run.audience_size,
        "fully_queued_s": round(queued_at - started, 3) if queued_at else None,
        "queued_per_second": round(recipients / (queued_at - started), 1) if queued_at else None,
        "first_arrival_s": round(times[0] - started, 3) if times else None,
        "arrived": len(arrivals),
        "all_arrived": len(arrivals) >= recipients,
        "all_delivered_s": round(last - started, 3),
        "deliveries_per_second": round(len(arrivals) / (last - started), 1),
        "first_to_last_per_second": round((len(times) - 1) / (times[-1] - times[0]), 1) if len(times) > 1 else None,
        "fan_out_worker_kib": {
            "rss_before": before["VmRSS"],
            "peak_before": before["VmHWM"],
            "peak_after": after["VmHWM"],
            "rss_max_sampled": max(rss_samples, default=None),
            "rss_first_sampled": rss_samples[0] if rss_samples else None,
            "rss_last_sampled": rss_samples[-1] if rss_samples else None,
        },
        "run_progress": progress["results"][0] if progress.get("results") else None,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--email-concurrency", type=int, default=3, help="celery processes on the email queue")
    parser.add_argument("--lead", type=float, default=20, help="seconds between creating the campaign and its time")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--ceiling-messages", type=int, default=4000)
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine")
    args = parser.parse_args(argv)

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
        log("starting gunicorn, beat, a fan-out worker and the email workers")
        web = start_gunicorn(procs, port, 2, 4)
        start_relay(procs)
        tenant_id, api_key = register_tenant(base_url)
        log(f"writing {args.recipients} recipients")
        create_recipients(tenant_id, args.recipients)
        create_smtp_provider(base_url, api_key, sink.port)
        fan_out = start_worker(procs, "default", 1, name="bench-fan-out@%h")
        email = start_worker(procs, "email", args.email_concurrency)
        procs.start(
            "beat",
            [PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"],
        )
        pids = {"fan-out worker": fan_out.popen.pid, "email workers": email.popen.pid, "gunicorn": web.popen.pid}
        log(f"campaign to {args.recipients} recipients, due in {args.lead:.0f} s")
        with CpuMeter(**pids, sink=sink.pid) as cpu:
            campaign = run_campaign(
                base_url, api_key, sink, procs, fan_out.popen.pid, args.recipients, args.lead, args.timeout
            )
        log("sink ceiling again, after the run")
        ceilings_after = [
            measure_sink_ceiling(sink, 1, args.ceiling_messages),
            measure_sink_ceiling(sink, 4, args.ceiling_messages),
        ]
        procs.check()

    ceiling_1 = max(ceilings[0]["per_second"], ceilings_after[0]["per_second"])
    ceiling_4 = max(ceilings[1]["per_second"], ceilings_after[1]["per_second"])
    ceiling = max(ceiling_1, ceiling_4)
    campaign["ratio_to_ceiling_1conn"] = round(campaign["deliveries_per_second"] / ceiling_1, 3)
    campaign["ratio_to_ceiling_4conn"] = round(campaign["deliveries_per_second"] / ceiling_4, 3)
    campaign["cpu_seconds"] = cpu.used
    results.update(
        {"ceiling_before": ceilings, "ceiling_after": ceilings_after, "campaign": campaign, "ceiling": ceiling}
    )
    memory = campaign["fan_out_worker_kib"]
    mib = lambda kib: round(kib / 1024, 1) if kib else None  # noqa: E731
    tables = [
        print_table(
            "bench.campaign: sink ceiling (plain smtplib, this run)",
            ["smtplib client", "msgs/s before", "msgs/s after"],
            [
                ["one connection", ceilings[0]["per_second"], ceilings_after[0]["per_second"]],
                ["four connections", ceilings[1]["per_second"], ceilings_after[1]["per_second"]],
            ],
        ),
        print_table(
            f"bench.campaign: one campaign to {args.recipients} recipients, triggered by beat; fan-out worker -c 1, "
            f"email worker -c {args.email_concurrency}",
            ["figure", "value"],
            [
                ["beat trigger after the scheduled time, s", campaign["beat_trigger_delay_s"]],
                ["run start -> every message queued, s", campaign["fully_queued_s"]],
                ["messages queued per second", campaign["queued_per_second"]],
                ["run start -> every email at the sink, s", campaign["all_delivered_s"]],
                ["emails at the sink", campaign["arrived"]],
                ["deliveries/s (run start to last email)", campaign["deliveries_per_second"]],
                ["x sink ceiling, 1 connection", pct(campaign["ratio_to_ceiling_1conn"])],
                ["x sink ceiling, 4 connections", pct(campaign["ratio_to_ceiling_4conn"])],
                ["fan-out worker RSS before, MiB", mib(memory["rss_before"])],
                ["fan-out worker peak RSS (VmHWM) after, MiB", mib(memory["peak_after"])],
                [
                    "fan-out worker RSS first/last sample, MiB",
                    f"{mib(memory['rss_first_sampled'])} / {mib(memory['rss_last_sampled'])}",
                ],
                ["(machine busy before start)", pct(busy)],
            ],
        ),
        print_table(
            "bench.campaign: CPU seconds by process during the run",
            ["process", "CPU s"],
            [[name, seconds] for name, seconds in cpu.used.items()],
        ),
    ]
    ratio = campaign["deliveries_per_second"] / ceiling
    summary = [
        summary_row("campaign fully queued", campaign["fully_queued_s"], "s"),
        summary_row("campaign all delivered", campaign["all_delivered_s"], "s"),
        summary_row("fan-out worker peak RSS", mib(memory["peak_after"]), "MiB"),
        summary_row("campaign / sink ceiling", round(ratio, 3), "", f">= {TARGET_RATIO}", ratio >= TARGET_RATIO),
    ]
    write_results("campaign", vars(args), results, summary, tables)
    return results


if __name__ == "__main__":
    main()
