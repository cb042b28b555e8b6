"""Instructions per send (or per email): bench.acceptloop or bench.deliverloop run under
valgrind's cachegrind, which counts every instruction the Python process executes.

A CPU-time figure moves by 50% and more on this 2-core box when anything else runs (bench.acceptloop
measured 3.9 ms of Python per send idle and 6.4 ms beside four test suites); an instruction
count does not: it is the same on a busy box as on an idle one, within about 1%. So a change
worth a few percent can be told apart while other work runs, which no timed run here can. What it
does not see: time waiting (PostgreSQL, Redis, the SMTP sink run in their own processes and are
not counted), and what a cache miss or a busy core costs per instruction.

The loop runs twice, with `--small` and `--large` measured sends after the same warm-up; the
difference divided by `--large - --small` is the instructions of one send, without the start-up
(Python, Django, the bench's tenant and recipients), which is the same in both runs; for
bench.deliverloop both runs accept as many sends first (`--accepted`), so the difference is the
deliveries alone. Run the two
sides of a change one after the other, each in its own checkout and bench database
(`BENCH_DB_NAME`); they need not alternate.

    .venv/bin/python -m bench.instructions [acceptloop|deliverloop] [--small 50] [--large 250]
                                           [--warmup 30] [--size 1]

Needs valgrind (Debian's package `valgrind`: `make bench-deps` installs it). Under cachegrind the
process runs 20-50x slower: the defaults take 2-4 minutes.
"""

import argparse
import re
import shutil
import subprocess
import sys

from .report import print_table, summary_row, write_results

# The argument of each loop that sets how many sends (emails) it measures.
COUNT_ARGUMENT = {"acceptloop": "--requests", "deliverloop": "--emails"}
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def instructions(loop: str, count: int, warmup: int, extra: list[str]) -> int:
    """Every instruction of one run of `bench.<loop>` measuring `count` sends."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        f"bench.{loop}",
        COUNT_ARGUMENT[loop],
        str(count),
        "--warmup",
        str(warmup),
        *extra,
    ]
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    found = REFS.search(run.stderr)
    if run.returncode != 0 or found is None:
        raise SystemExit(
            f"bench.{loop} under valgrind failed ({run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}"
        )
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("loop", nargs="?", choices=sorted(COUNT_ARGUMENT), default="acceptloop")
    parser.add_argument("--small", type=int, default=50, help="sends measured in the first run")
    parser.add_argument("--large", type=int, default=250, help="sends measured in the second run")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--size", type=int, help="deliverloop: message ids per deliver() call")
    parser.add_argument("--relay-busy", action="store_true", help="acceptloop: the sends find the relay polling")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: make bench-deps (Debian's package valgrind)")
    if args.large <= args.small:
        raise SystemExit("--large must be more than --small")
    extra = []
    if args.loop == "deliverloop":
        # Both runs accept as many sends first, so the difference holds deliveries alone.
        extra = ["--accepted", str(args.warmup + args.large), *(["--size", str(args.size)] if args.size else [])]
    elif args.relay_busy:
        extra = ["--relay-busy"]
    small = instructions(args.loop, args.small, args.warmup, extra)
    large = instructions(args.loop, args.large, args.warmup, extra)
    per_send = (large - small) / (args.large - args.small)
    unit = "email" if args.loop == "deliverloop" else "send"
    table = print_table(
        f"bench.instructions: bench.{args.loop} under cachegrind, instructions of the Python process",
        ["run", "measured", "instructions"],
        [
            ["small", args.small, f"{small:,}"],
            ["large", args.large, f"{large:,}"],
            [f"per {unit} (difference)", args.large - args.small, f"{per_send:,.0f}"],
        ],
    )
    write_results(
        f"instructions-{args.loop}",
        vars(args),
        {"small": small, "large": large, "per_send": per_send},
        [summary_row(f"instructions per {unit}", round(per_send), "instructions")],
        [table],
    )


if __name__ == "__main__":
    main()
