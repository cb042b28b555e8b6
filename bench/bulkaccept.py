"""How long a bulk send of 10,000 recipients takes to be answered (202): one request at a time.

Issue 14: "a 10,000-recipient bulk request answered (202) in <= 1 s". gunicorn serves the real
API; nothing consumes the queue (the fan-out is a task, after the answer). `--rounds` POSTs of
one bulk email send to `--recipients` recipients each (the API's most, `MAX_BULK_RECIPIENTS`),
one after the other, for each request shape:

- `ids`: the recipients' external ids (`"recipients": ["r000001", ...]`);
- `objects`: objects with an id and an email address (`{"id": ..., "email": ...}`), which the
  fan-out upserts: each is validated like a recipient.

Prints p50 and max of the time to the 202, the body's size, and gunicorn's and PostgreSQL's CPU
per request. `--py-spy FILE` records gunicorn (FILE-ids, FILE-objects).

    .venv/bin/python -m bench.bulkaccept [--recipients 10000] [--rounds 5] [--shapes ids objects]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from .client import address, create_recipients, email_send, register_tenant
from .cpu import CpuMeter, PySpy
from .env import log, prepare
from .processes import Processes, free_port, start_gunicorn
from .report import print_table, summary_row, write_results

TARGET_MS = 1000
SHAPES = ("ids", "objects")


def targets(ids: list[str], shape: str) -> list:
    return ids if shape == "ids" else [{"id": rid, "email": address(rid)} for rid in ids]


def post_rounds(base_url: str, api_key: str, body: dict, rounds: int) -> tuple[list[float], list[str]]:
    """Each request's seconds to its answer, and the errors (status and the start of the body)."""
    import httpx

    content = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    seconds, errors = [], []
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        for _ in range(rounds):
            started = time.perf_counter()
            response = client.post("/api/v1/notifications", content=content)
            elapsed = time.perf_counter() - started
            if response.status_code == 202:
                seconds.append(elapsed)
            else:
                errors.append(f"{response.status_code}: {response.text[:200]}")
    return seconds, errors


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine")
    parser.add_argument("--py-spy", metavar="FILE", help="record gunicorn into FILE-<shape> (collapsed stacks)")
    args = parser.parse_args(argv)

    busy = prepare(args.quiet_wait)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    results: dict = {"machine_busy_before": busy, "shapes": {}}
    with Processes() as procs:
        web = start_gunicorn(procs, port, args.workers, args.threads)
        tenant_id, api_key = register_tenant(base_url)
        ids = create_recipients(tenant_id, args.recipients)
        spy = Path(args.py_spy) if args.py_spy else None
        for shape in args.shapes:
            body = email_send(recipients=targets(ids, shape))
            log(f"warm-up, then {args.rounds} bulk sends of {args.recipients} recipients ({shape})")
            post_rounds(base_url, api_key, body, 1)  # every gunicorn worker's first request is dearer
            with (
                PySpy(web.popen.pid, spy.with_name(f"{spy.stem}-{shape}{spy.suffix}") if spy else None),
                CpuMeter(gunicorn=web.popen.pid) as cpu,
            ):
                seconds, errors = post_rounds(base_url, api_key, body, args.rounds)
            procs.check()
            results["shapes"][shape] = {
                "body_bytes": len(json.dumps(body)),
                "answered": len(seconds),
                "errors": errors,
                "seconds": [round(s, 3) for s in seconds],
                "p50_ms": round(statistics.median(seconds) * 1000, 1) if seconds else None,
                "max_ms": round(max(seconds) * 1000, 1) if seconds else None,
                "cpu_ms_per_request": {
                    name: round(used * 1000 / max(1, len(seconds)), 1)
                    for name, used in cpu.used.items()
                    if name != "wall"
                },
            }
    rows = [
        [shape, r["body_bytes"], r["answered"], len(r["errors"]), r["p50_ms"], r["max_ms"],
         r["cpu_ms_per_request"]["gunicorn"], r["cpu_ms_per_request"]["postgres"]]
        for shape, r in results["shapes"].items()
    ]  # fmt: skip
    table = print_table(
        f"bench.bulkaccept: one bulk send of {args.recipients:,} recipients, {args.rounds} rounds, "
        f"gunicorn gthread {args.workers}x{args.threads}, no worker",
        ["recipients as", "body bytes", "202s", "errors", "p50 ms", "max ms", "gunicorn CPU ms", "PostgreSQL CPU ms"],
        rows,
    )
    summary = [
        summary_row(
            f"{args.recipients:,}-recipient bulk 202 ({shape}), max",
            r["max_ms"],
            "ms",
            f"<= {TARGET_MS}",
            r["max_ms"] is not None and not r["errors"] and r["max_ms"] <= TARGET_MS,
        )
        for shape, r in results["shapes"].items()
    ]
    write_results("bulkaccept", vars(args), results, summary, [table])
    return results


if __name__ == "__main__":
    main()
