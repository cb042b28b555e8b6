"""A dead process's live gauges stop counting: gunicorn's child_exit and Celery's
worker_process_shutdown hooks remove its `livesum` files, and leave its counters."""

from types import SimpleNamespace

import pytest

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
