"""A dead process's live gauges stop counting: gunicorn's child_exit and Celery's
worker_process_shutdown hooks remove its `livesum` files, and leave its counters."""

import ast
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from django.conf import settings

from alertflow import multiproc, task_context
from config import gunicorn


@pytest.fixture
def metrics_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(multiproc.MULTIPROC_ENV, str(tmp_path))
    for name in ("gauge_livesum", "counter"):
        for pid in (41, 42):
            (tmp_path / f"{name}_{multiproc.process_id(pid)}.db").write_bytes(b"")
    return tmp_path


def files(directory) -> set[str]:
    return {path.name.removesuffix(".db").replace(multiproc.HOST_TAG + "-", "") for path in directory.iterdir()}


def test_a_dead_gunicorn_worker_no_longer_counts_in_live_gauges(metrics_dir):
    gunicorn.child_exit(server=None, worker=SimpleNamespace(pid=41))

    assert files(metrics_dir) == {"counter_41", "counter_42", "gauge_livesum_42"}


def test_a_dead_celery_pool_process_no_longer_counts_in_live_gauges(metrics_dir):
    task_context.forget_process_metrics(pid=42, exitcode=0)

    assert files(metrics_dir) == {"counter_41", "counter_42", "gauge_livesum_41"}


def files_a_fresh_process_writes(directory, env_value: str) -> list[str]:
    """The metric files a new process leaves in `directory` (its working directory) after
    counting one request, with PROMETHEUS_MULTIPROC_DIR set to `env_value`. A process of its
    own: prometheus-client picks its storage when it is imported."""
    code = (
        "import os, django; django.setup(); from alertflow import metrics; "
        "metrics.HTTP_REQUESTS.labels('r', 'GET', '200').inc(); "
        "print(sorted(name for name in os.listdir('.') if name.endswith('.db')))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "true",
        multiproc.MULTIPROC_ENV: env_value,
    }
    env["PYTHONPATH"] = str(settings.BASE_DIR)
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=directory, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return ast.literal_eval(run.stdout.strip().splitlines()[-1])


def test_an_empty_multiproc_dir_is_unset_and_writes_no_files(tmp_path):
    """As every other setting, an empty value means unset: metrics stay in the process. Before,
    prometheus-client saw the variable and wrote its files into the working directory (202 of
    them once ended up committed at the repository's root), which /metrics never read."""
    assert files_a_fresh_process_writes(tmp_path, "") == []


def test_a_multiproc_dir_gets_the_files_and_the_working_directory_none(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()

    assert files_a_fresh_process_writes(tmp_path, str(metrics_dir)) == []
    assert any(path.name.startswith("counter_") for path in metrics_dir.iterdir())
