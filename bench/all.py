"""Run every benchmark in sequence, each as its own process, then print one summary table.

    .venv/bin/python -m bench.all [accept e2e priority]

Each benchmark writes `bench/results/<name>.json`; the summary is read back from those files
(and written to `bench/results/all.json`). The exit status is non-zero if a benchmark crashed,
not if a target was missed: these are measurements, not tests.
"""

import json
import subprocess
import sys
import time

from .env import PYTHON, RESULTS_DIR, ROOT
from .report import print_table, write_results

BENCHMARKS = ["accept", "bulkaccept", "e2e", "postoffice", "makerun", "priority", "inbox"]
# Run only when named: minutes long (`bench.all campaign`).
LONG_BENCHMARKS = ["campaign"]


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or BENCHMARKS
    known = BENCHMARKS + LONG_BENCHMARKS
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (one of {', '.join(known)})", file=sys.stderr)
        return 2
    crashed, durations = [], {}
    for name in names:
        path = RESULTS_DIR / f"{name}.json"
        path.unlink(missing_ok=True)
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        code = subprocess.call([PYTHON, "-m", f"bench.{name}"], cwd=ROOT)
        durations[name] = round(time.monotonic() - started, 1)
        if code != 0 or not path.exists():
            crashed.append(name)

    rows, summary = [], []
    for name in names:
        path = RESULTS_DIR / f"{name}.json"
        if name in crashed:
            rows.append([name, "CRASHED", "-", "", "", "-"])
            continue
        document = json.loads(path.read_text())
        for item in document["summary"]:
            ok = item["ok"]
            verdict = "" if ok is None else ("met" if ok else "MISSED")
            rows.append([name, item["metric"], item["value"], item["unit"], item["target"], verdict])
            summary.append({"benchmark": name, **item})
    print()
    table = print_table(
        "bench.all: summary (one run on this machine; see bench/README.md for what limits each figure)",
        ["benchmark", "metric", "value", "unit", "target", "verdict"],
        rows,
    )
    write_results("all", {"benchmarks": names}, {"durations_s": durations, "crashed": crashed}, summary, [table])
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
