"""How many CPUs this process may use, for sizing process pools (the worker's, `make run`'s).

`os.cpu_count()` is the machine's count: in a container limited to 2 CPUs of a 64-core host it
says 64, and a worker started with two processes per core would fork 128 Djangos into 2 CPUs'
worth of time. (Python 3.13's `os.process_cpu_count()` does the affinity half of this.)
"""

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may run on (its affinity: `taskset`, a container's `--cpuset-cpus`),
    fewer when its cgroup's CPU quota (a container's `--cpus`, Kubernetes' CPU limit) grants
    less time than that, rounded up; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform (macOS)
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPUs' worth of time the cgroup grants (cgroup v2's `cpu.max`, v1's
    `cpu.cfs_quota_us` / `cpu.cfs_period_us`); None when unlimited or unreadable."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
