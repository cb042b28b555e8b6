"""The product's API from the outside: a tenant, its recipients and SMTP provider, send bodies,
and load generators: wrk (C, one keep-alive connection per thread, bench/wrk.lua) or httpx
(closed-loop threads, optionally over several processes)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .env import LOG_DIR
from .smtp import FROM_EMAIL

SEND_PATH = "/api/v1/notifications"
WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
# wrk by default: httpx in Python threads spent ~1.7 ms of CPU per request on the two cores the
# server measured has (bench/README, issue 14 session 4), a share of the box no real client takes.
LOAD_GENERATORS = ("wrk", "httpx")

# Recipients' addresses: `<external id>@<RECIPIENT_DOMAIN>`.
RECIPIENT_DOMAIN = "bench.test"


def register_tenant(base_url: str, name: str = "bench") -> tuple[str, str]:
    """A tenant through the real API; returns (tenant id, API key)."""
    import httpx

    response = httpx.post(
        f"{base_url}/api/v1/register", json={"service_name": name, "notification_types": ["bench"]}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    return body["client_id"], body["api_token"]


def address(recipient_id: str) -> str:
    """The email address `create_recipients` gave a recipient."""
    return f"{recipient_id}@{RECIPIENT_DOMAIN}"


def create_recipients(tenant_id, count: int, prefix: str = "r") -> list[str]:
    """`count` recipients `<prefix>000000`... with an email address (`address()`), written with
    bulk_create through the ORM (the caller has set up Django); returns their external ids."""
    from preferences.models import Recipient

    ids = [f"{prefix}{i:06d}" for i in range(count)]
    Recipient.objects.bulk_create(
        [Recipient(tenant_id=tenant_id, external_id=rid, email=address(rid)) for rid in ids], batch_size=2000
    )
    return ids


def create_smtp_provider(base_url: str, api_key: str, port: int) -> dict:
    """The tenant's `smtp` provider, pointing at a sink on 127.0.0.1:`port`, through the API."""
    import httpx

    response = httpx.post(
        f"{base_url}/api/v1/providers",
        headers={"Authorization": f"Bearer {api_key}"},
        json={
            "channel": "email",
            "kind": "smtp",
            "name": "sink",
            "config": {"host": "127.0.0.1", "port": port, "from_email": FROM_EMAIL, "timeout": 10},
        },
        timeout=30,
    )
    if response.status_code != 201:
        raise RuntimeError(f"creating the smtp provider answered {response.status_code}: {response.text[:500]}")
    return response.json()


def email_send(recipient: str | None = None, recipients: list[str] | None = None, priority: str | None = None) -> dict:
    body: dict = {
        "channels": ["email"],
        "content": {"email": {"subject": "Bench {{ recipient.id }}", "text": "Hello."}},
    }
    if recipient is not None:
        body["recipient"] = recipient
    if recipients is not None:
        body["recipients"] = recipients
    if priority is not None:
        body["priority"] = priority
    return body


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    # (send start unix time, message id) per accepted single send
    accepted: list[tuple[float, str]] = field(default_factory=list)
    client_cpu: float = 0.0  # CPU seconds the load generator itself used
    # The generator's own latency percentiles in ms (wrk's histogram, every response), when it has them.
    latency_ms: dict | None = None
    # Responses past each connection's share (wrk's keep_sending): not in the figures above.
    extra: int = 0


def _load_thread(base_url, api_key, bodies: Iterable[dict], result: LoadResult, lock: threading.Lock) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"}
    latencies, accepted, errors = [], [], {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for body in bodies:
            sent_at = time.time()
            start = time.perf_counter()
            try:
                response = client.post(SEND_PATH, json=body)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            elapsed = time.perf_counter() - start
            if response.status_code != 202:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                continue
            latencies.append(elapsed)
            messages = response.json().get("messages") or []
            accepted.extend((sent_at, m["id"]) for m in messages)
    with lock:
        result.latencies.extend(latencies)
        result.accepted.extend(accepted)
        for key, n in errors.items():
            result.errors[key] = result.errors.get(key, 0) + n


def run_load(base_url: str, api_key: str, bodies: list[dict], clients: int) -> LoadResult:
    """POST `bodies` with `clients` threads, each with its own keep-alive httpx.Client."""
    result = LoadResult()
    lock = threading.Lock()
    shares = [bodies[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=_load_thread, args=(base_url, api_key, share, result, lock)) for share in shares]
    cpu = time.process_time()
    result.started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.finished = time.time()
    result.client_cpu = time.process_time() - cpu
    return result


def _load_process(base_url, api_key, bodies, threads, queue) -> None:
    result = run_load(base_url, api_key, bodies, threads)
    queue.put((result.latencies, result.errors, result.started, result.finished, result.accepted, result.client_cpu))


def run_load_processes(base_url: str, api_key: str, bodies: list[dict], clients: int, processes: int) -> LoadResult:
    """`run_load` split over `processes` client processes, so the load generator's GIL is not the limit."""
    if processes <= 1:
        return run_load(base_url, api_key, bodies, clients)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    children = [
        ctx.Process(target=_load_process, args=(base_url, api_key, bodies[i::processes], threads, queue))
        for i, threads in enumerate(per)
    ]
    for child in children:
        child.start()
    result = LoadResult(started=float("inf"))
    for _ in children:
        latencies, errors, started, finished, accepted, client_cpu = queue.get(timeout=600)
        result.client_cpu += client_cpu
        result.latencies.extend(latencies)
        result.accepted.extend(accepted)
        for key, n in errors.items():
            result.errors[key] = result.errors.get(key, 0) + n
        result.started = min(result.started, started)
        result.finished = max(result.finished, finished)
    for child in children:
        child.join(10)
    return result


def run_generator(
    generator: str, base_url: str, api_key: str, bodies: list[dict], clients: int, processes: int = 1
) -> LoadResult:
    """POST `bodies` to the send endpoint from `clients` keep-alive connections with `generator`
    (one of LOAD_GENERATORS; `processes` is httpx's)."""
    if generator == "wrk":
        return run_wrk(base_url, api_key, bodies, clients)
    return run_load_processes(base_url, api_key, bodies, clients, processes)


def run_wrk(
    base_url: str, api_key: str, bodies: list[dict], clients: int, timeout: float = 900, keep_sending: bool = False
) -> LoadResult:
    """POST `bodies` with wrk, `clients` threads of one connection each (bench/wrk.lua): each
    thread sends its share (`bodies[i::clients]`, in order) and idles; once every thread has its
    last response wrk is stopped (SIGINT), and its done() writes each response (status, send and
    response times, message ids) and wrk's own latency percentiles and socket errors.

    `keep_sending`: a thread past its share sends it again instead of idling, until wrk is
    stopped (for gunicorn's sync workers, see bench/wrk.lua); those responses are only counted
    (`extra`), and wrk's percentiles include them."""
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed: `make bench-deps` (apt-get install wrk), or --load httpx")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        for i in range(clients):
            lines = [json.dumps(body, separators=(",", ":")) + "\n" for body in bodies[i::clients]]
            Path(tmp, f"bodies-{i + 1}.jsonl").write_text("".join(lines))
        with (LOG_DIR / "wrk.log").open("ab") as stderr:
            popen = subprocess.Popen(
                [exe, "-t", str(clients), "-c", str(clients), "-d", f"{timeout:.0f}s", "--timeout", "30s",
                 "-s", str(WRK_SCRIPT), base_url, "--", tmp, api_key, SEND_PATH,
                 *(["keep-sending"] if keep_sending else [])],
                stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        lines: list[str] = []
        all_done = threading.Event()

        def read() -> None:
            done = 0
            for line in popen.stdout:
                lines.append(line)
                done += line == "done\n"
                if done == clients:
                    all_done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            all_done.wait(timeout)
            popen.send_signal(signal.SIGINT)  # wrk then joins its threads, reports and runs done()
            reader.join(60)
            # wait4, not wait: the child's own CPU (user + system), the load generator's cost.
            _, status, usage = os.wait4(popen.pid, 0)
            popen.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if popen.returncode is None:
                popen.kill()
                popen.wait(5)
        report = [line for line in lines if line.startswith("WRK ")]
        if popen.returncode != 0 or not report:
            raise RuntimeError(f"wrk exited with {popen.returncode}: {''.join(lines)[-2000:]}")
        figures = json.loads(report[-1][4:])
        results = Path(tmp, "results.tsv").read_text().splitlines()
    result = LoadResult(client_cpu=usage.ru_utime + usage.ru_stime, extra=figures["requests"] - len(results))
    result.latency_ms = {key: round(figures[f"{key}_us"] / 1000, 1) for key in ("p50", "p95", "p99", "max", "mean")}
    sent_times, received_times = [], []
    for line in results:
        status, sent_at, received_at, ids = line.split("\t")
        sent_times.append(float(sent_at))
        received_times.append(float(received_at))
        if status != "202":
            result.errors[status] = result.errors.get(status, 0) + 1
            continue
        result.latencies.append(float(received_at) - float(sent_at))
        result.accepted.extend((float(sent_at), mid) for mid in ids.split(",") if mid)
    # Socket errors and requests past --timeout, which have no response line (or a late one).
    for kind in ("connect", "read", "write", "timeout"):
        if figures[kind]:
            result.errors[f"wrk {kind}"] = figures[kind]
    result.started = min(sent_times, default=0.0)
    result.finished = max(received_times, default=0.0)
    return result
