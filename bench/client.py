"""The product's API from the outside: a tenant, its recipients and SMTP provider, send bodies,
and load generators (closed-loop threads, optionally over several processes)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .smtp import FROM_EMAIL

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


def _load_thread(base_url, api_key, bodies: Iterable[dict], result: LoadResult, lock: threading.Lock) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"}
    latencies, accepted, errors = [], [], {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for body in bodies:
            sent_at = time.time()
            start = time.perf_counter()
            try:
                response = client.post("/api/v1/notifications", json=body)
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
