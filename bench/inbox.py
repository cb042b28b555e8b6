"""In-app over websockets: API-to-socket latency with 1,000 sockets connected, and one message
reaching 1,000 recipients' sockets.

Starts gunicorn (web), two uvicorn ws processes (the sockets split between them, as behind a
proxy with two ws nodes) and a Celery worker on the `default` and `inapp` queues, then opens one
websocket per recipient (recipient tokens, `/ws/inbox`) from this process:

(a) `--singles` single in-app sends, started `--rate` per second, each to a random connected
    recipient: from the start of the POST to that recipient's socket receiving the message frame
    (accept, enqueue, worker claim and render, inbox insert, publish on the channels-redis
    pub/sub layer, the ws process, the socket);
(b) one bulk send to all `--sockets` recipients: from the start of the POST to each socket
    receiving it, and to the last one.

    .venv/bin/python -m bench.inbox [--sockets 1000] [--singles 200] [--rate 10] [--port PORT]

`--port` is the web port; the ws processes take the next two (default: free ports).
"""

import argparse
import asyncio
import json
import random
import time

import httpx

from .client import create_recipients, register_tenant
from .env import PYTHON, log, prepare
from .processes import Processes, free_port, start_gunicorn, start_relay, start_worker, wait_until
from .report import latency_summary_ms, print_table, summary_row, write_results

TARGET_P99_MS = 250.0
CONNECT_BATCH = 50


def content(title: str) -> dict:
    return {"inapp": {"title": title, "body": "Bench {{ recipient.id }}", "action_url": "https://app.test/bench"}}


def start_ws(procs: Processes, name: str, port: int) -> None:
    procs.start(
        name,
        [
            PYTHON, "-m", "uvicorn", "config.asgi:application",
            "--host", "127.0.0.1", "--port", str(port),
            "--lifespan", "off", "--log-level", "warning", "--backlog", "2048",
        ],
    )  # fmt: skip

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/ws/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60, name, interval=0.2, procs=procs)


class Sockets:
    """One websocket per recipient; records when each message id reached which recipient."""

    def __init__(self):
        self.arrivals: dict[str, dict[str, float]] = {}  # message id -> {recipient: time}
        self.sockets = []
        self.readers = []

    async def open(self, urls: dict[str, str]) -> float:
        import websockets

        async def one(recipient: str, url: str):
            socket = await websockets.connect(url, max_queue=None, open_timeout=60)
            first = json.loads(await asyncio.wait_for(socket.recv(), 60))
            assert first["type"] == "unread_count", first
            return recipient, socket

        started = time.monotonic()
        items = list(urls.items())
        for start in range(0, len(items), CONNECT_BATCH):
            opened = await asyncio.gather(*(one(r, u) for r, u in items[start : start + CONNECT_BATCH]))
            for recipient, socket in opened:
                self.sockets.append(socket)
                self.readers.append(asyncio.create_task(self.read(recipient, socket)))
        return time.monotonic() - started

    async def read(self, recipient: str, socket) -> None:
        import websockets

        try:
            async for raw in socket:
                now = time.monotonic()
                frame = json.loads(raw)
                if frame.get("type") == "message":
                    self.arrivals.setdefault(frame["id"], {})[recipient] = now
        except websockets.ConnectionClosed:
            pass

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)

    async def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(0.01)
        return predicate()


async def run_singles(client: httpx.AsyncClient, sockets: Sockets, recipients: list[str], count: int, rate: float):
    sent: dict[str, tuple[float, str]] = {}  # message id -> (POST started, recipient)
    errors = 0

    async def send(number: int):
        nonlocal errors
        recipient = random.choice(recipients)
        started = time.monotonic()
        response = await client.post(
            "/api/v1/notifications",
            json={"recipient": recipient, "channels": ["inapp"], "content": content(f"single {number}")},
        )
        if response.status_code != 202:
            errors += 1
            return
        [message] = response.json()["messages"]
        sent[message["id"]] = (started, recipient)

    tasks = []
    for number in range(count):
        tasks.append(asyncio.create_task(send(number)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)

    def all_arrived() -> bool:
        return all(recipient in sockets.arrivals.get(mid, {}) for mid, (_, recipient) in sent.items())

    await sockets.wait(all_arrived, 60)
    latencies = [
        sockets.arrivals[mid][recipient] - started
        for mid, (started, recipient) in sent.items()
        if recipient in sockets.arrivals.get(mid, {})
    ]
    return {
        "sends": count,
        "rate_per_second": rate,
        "accepted": len(sent),
        "request_errors": errors,
        "arrived": len(latencies),
        "api_to_socket_ms": latency_summary_ms(latencies),
    }


async def run_fan_out(client: httpx.AsyncClient, sockets: Sockets, recipients: list[str]):
    started = time.monotonic()
    response = await client.post(
        "/api/v1/notifications",
        json={"recipients": recipients, "channels": ["inapp"], "content": content("to everyone")},
    )
    accepted = time.monotonic() - started
    response.raise_for_status()
    notification_id = response.json()["id"]

    from notifications.models import Message

    ids = await asyncio.to_thread(
        lambda: {str(i) for i in Message.objects.filter(notification_id=notification_id).values_list("id", flat=True)}
    )
    while len(ids) < len(recipients) and time.monotonic() - started < 60:  # the fan-out task writes them
        await asyncio.sleep(0.05)
        ids = await asyncio.to_thread(
            lambda: {
                str(i) for i in Message.objects.filter(notification_id=notification_id).values_list("id", flat=True)
            }
        )

    def received() -> int:
        return sum(1 for mid in ids if sockets.arrivals.get(mid))

    await sockets.wait(lambda: received() >= len(recipients), 120)
    times = [t - started for mid in ids for t in sockets.arrivals.get(mid, {}).values()]
    return {
        "recipients": len(recipients),
        "accept_ms": round(accepted * 1000, 1),
        "received": len(times),
        "first_socket_ms": round(min(times) * 1000, 1) if times else None,
        "last_socket_ms": round(max(times) * 1000, 1) if times else None,
        "per_socket_ms": latency_summary_ms(times),
    }


async def measure(base_url: str, api_key: str, urls: dict[str, str], args) -> dict:
    sockets = Sockets()
    connect_seconds = await sockets.open(urls)
    log(f"{len(sockets.sockets)} sockets open in {connect_seconds:.1f}s")
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as client:
            # Warm-up: first requests pay for imports and connections in every process.
            await run_singles(client, sockets, list(urls), 20, args.rate)
            log(f"singles: {args.singles} at {args.rate}/s")
            singles = await run_singles(client, sockets, list(urls), args.singles, args.rate)
            log("fan-out: one bulk send to every recipient")
            fan_out = await run_fan_out(client, sockets, list(urls))
    finally:
        await sockets.close()
    return {"sockets": len(urls), "connect_seconds": round(connect_seconds, 2), "singles": singles, "fan_out": fan_out}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000, help="connected recipients, one socket each")
    parser.add_argument("--singles", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10, help="single sends started per second")
    parser.add_argument("--concurrency", type=int, default=2, help="celery worker processes")
    parser.add_argument("--port", type=int, default=0, help="web port; ws on the next two (default: free ports)")
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine")
    args = parser.parse_args(argv)

    busy = prepare(args.quiet_wait)
    web_port = args.port or free_port()
    ws_ports = [web_port + 1, web_port + 2] if args.port else [free_port(), free_port()]
    base_url = f"http://127.0.0.1:{web_port}"
    with Processes() as procs:
        start_gunicorn(procs, web_port, 2, 4)
        start_relay(procs)
        for number, port in enumerate(ws_ports, 1):
            start_ws(procs, f"ws{number}", port)
        start_worker(procs, "default,inapp", args.concurrency)
        tenant_id, api_key = register_tenant(base_url)
        recipients = create_recipients(tenant_id, args.sockets, prefix="inbox")

        from delivery.inbox_auth import issue_token
        from preferences.models import Recipient

        urls = {}
        for index, recipient in enumerate(Recipient.objects.filter(tenant_id=tenant_id).order_by("external_id")):
            port = ws_ports[index % len(ws_ports)]
            urls[recipient.external_id] = f"ws://127.0.0.1:{port}/ws/inbox?token={issue_token(recipient)[0]}"
        assert len(urls) == len(recipients)
        results = asyncio.run(measure(base_url, api_key, urls, args))
        procs.check()

    singles, fan_out = results["singles"], results["fan_out"]
    latency = singles["api_to_socket_ms"]
    tables = [
        print_table(
            f"bench.inbox (a): single in-app sends at {args.rate:g}/s with {results['sockets']} sockets connected "
            f"over {len(ws_ports)} ws processes (POST start -> message frame on the socket)",
            ["sends", "arrived", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            [
                [
                    singles["sends"],
                    singles["arrived"],
                    singles["request_errors"],
                    latency["p50"],
                    latency["p95"],
                    latency["p99"],
                    latency["max"],
                ]
            ],
        ),
        print_table(
            f"bench.inbox (b): one bulk send to {fan_out['recipients']} recipients' sockets (POST start -> each socket)",
            ["received", "accept ms", "first ms", "p50 ms", "p99 ms", "last ms"],
            [
                [
                    fan_out["received"],
                    fan_out["accept_ms"],
                    fan_out["first_socket_ms"],
                    fan_out["per_socket_ms"]["p50"],
                    fan_out["per_socket_ms"]["p99"],
                    fan_out["last_socket_ms"],
                ]
            ],
        ),
    ]
    p99 = latency["p99"]
    summary = [
        summary_row(
            f"API-to-socket p99, {results['sockets']} sockets",
            p99,
            "ms",
            f"<= {TARGET_P99_MS:g}",
            p99 is not None and p99 <= TARGET_P99_MS,
        ),
        summary_row("API-to-socket p50", latency["p50"], "ms"),
        summary_row(f"one message to {fan_out['recipients']} sockets (last)", fan_out["last_socket_ms"], "ms"),
    ]
    parameters = {**vars(args), "ws_processes": len(ws_ports), "cores_busy_before": busy}
    write_results("inbox", parameters, results, summary, tables)
    return results


if __name__ == "__main__":
    main()
