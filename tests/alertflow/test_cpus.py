"""Process pools are sized by the CPUs this process may use (alertflow/cpus.py), not by the
machine's count, which in a container is the host's."""

import os
import subprocess
import sys

import pytest

from alertflow.cpus import cgroup_cpu_quota, usable_cpus


def cgroup_v2(root, cpu_max: str):
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(root, quota: int, period: int = 100000):
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.fixture
def eight_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))


def test_a_quota_of_one_and_a_half_cpus_is_two(tmp_path, eight_cpus):
    assert usable_cpus(cgroup_v2(tmp_path, "150000 100000")) == 2


def test_a_quota_below_one_cpu_is_still_one(tmp_path, eight_cpus):
    assert usable_cpus(cgroup_v2(tmp_path, "20000 100000")) == 1


def test_no_quota_leaves_the_affinity(tmp_path, eight_cpus):
    assert usable_cpus(cgroup_v2(tmp_path, "max 100000")) == 8
    assert usable_cpus(tmp_path / "no-cgroup-here") == 8


def test_a_quota_above_the_affinity_leaves_the_affinity(tmp_path, eight_cpus):
    assert usable_cpus(cgroup_v1(tmp_path, 1600000)) == 8


def test_a_cgroup_v1_quota(tmp_path):
    assert cgroup_cpu_quota(cgroup_v1(tmp_path, 300000)) == 3


def test_no_cgroup_v1_quota(tmp_path):
    assert cgroup_cpu_quota(cgroup_v1(tmp_path, -1)) is None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to run on one")
def test_a_worker_pinned_to_one_cpu_runs_two_processes():
    # A process limited to one CPU (taskset, a container's cpuset) on a machine with more.
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
        "import django; django.setup();"
        "from config.celery import app; print(app.conf.worker_concurrency)"
    )
    env = {k: v for k, v in os.environ.items() if k != "WORKER_CONCURRENCY"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "2"  # WORKER_PROCESSES_PER_CORE processes for its one CPU
