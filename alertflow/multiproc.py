"""prometheus-client's multiprocess mode, without Django: gunicorn's master (config/gunicorn.py)
uses it before any Django is loaded.

Every process writes its samples to files in `PROMETHEUS_MULTIPROC_DIR`, named after the process;
a scrape merges them (alertflow/metrics.py). The variable must be set before prometheus-client
is imported: the supervisor (`manage.py run`, docker-compose.yml) sets it for every child.
"""

import os
import re
import socket

from prometheus_client import multiprocess, values

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Containers sharing one directory (docker-compose.yml) each number their processes from 1: the
# host name keeps two containers' pid 7 in separate files. No `_`: the client splits file names on it.
HOST_TAG = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())


def multiproc_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def process_id(pid: int | None = None) -> str:
    return f"{HOST_TAG}-{pid or os.getpid()}"


def configure() -> None:
    """Name this process's files after `process_id`, or keep the samples in the process without
    the directory. Call before any metric is created: each metric takes its value class when it
    is created."""
    if multiproc_dir():
        values.ValueClass = values.MultiProcessValue(process_identifier=process_id)
    else:
        # prometheus-client chose at its import from the variable's presence alone: set empty
        # (unset, as every setting here reads it) it wrote files into the working directory.
        values.ValueClass = values.MutexValue


def mark_process_dead(pid: int) -> None:
    """Forget a dead process's live gauges (its counters stay counted). Nothing without the directory."""
    path = multiproc_dir()
    if path:
        multiprocess.mark_process_dead(process_id(pid), path)
