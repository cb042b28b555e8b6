"""Figures and how they are reported: percentiles, the table printer, the results file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .env import PG_ADMIN_URL, REDIS_URL, RESULTS_DIR, ROOT


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary_ms(values: Sequence[float]) -> dict:
    """p50/p95/p99/max (and mean) in milliseconds of latencies given in seconds."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "p50": round(percentile(values, 50) * 1000, 1),
        "p95": round(percentile(values, 95) * 1000, 1),
        "p99": round(percentile(values, 99) * 1000, 1),
        "max": round(max(values) * 1000, 1),
        "mean": round(statistics.fmean(values) * 1000, 1),
    }


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        if abs(value) < 10:
            return f"{value:.3f}"
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A fixed-width table: text columns left-aligned, numbers right-aligned. Returns the text."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(str(h)), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    text_columns = {
        i
        for i in range(len(headers))
        if all(isinstance(row[i], str) and not row[i][:1].isdigit() for row in rows if row[i] is not None)
    }

    def line(values) -> str:
        return "  ".join(
            str(v).ljust(widths[i]) if i in text_columns else str(v).rjust(widths[i]) for i, v in enumerate(values)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    text = "\n".join([title, rule, line(headers), rule, *(line(r) for r in cells), rule])
    print(text, flush=True)
    return text


def machine_facts() -> dict:
    facts = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
    }
    with contextlib.suppress(Exception):
        facts["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    with contextlib.suppress(Exception):
        facts["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(PG_ADMIN_URL) as conn:
            facts["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    with contextlib.suppress(Exception):
        import redis

        facts["redis"] = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    with contextlib.suppress(Exception):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        facts["git_commit"] = head.stdout.strip()
        facts["git_dirty"] = bool(dirty.stdout.strip())
    return facts


def write_results(name: str, parameters: dict, results: dict, summary: list[dict], tables: list[str]) -> Path:
    """Write `bench/results/<name>.json`. `summary` rows: {"metric", "value", "unit", "target", "ok"}."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "parameters": parameters,
        "results": results,
        "summary": summary,
        "tables": tables,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}", flush=True)
    return path


def summary_row(metric: str, value, unit: str, target: str = "", ok: bool | None = None) -> dict:
    return {"metric": metric, "value": value, "unit": unit, "target": target, "ok": ok}
