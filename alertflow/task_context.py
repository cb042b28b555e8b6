"""The request id travels with every Celery task, so one grep follows a notification from the
API request to the provider call (and the task's metrics files are cleaned when it dies).

On publish (`before_task_publish`, in the publishing process) the current request id goes into
the task message's headers; before a task runs (`task_prerun`, in the worker) it is read back into
`request_id_var`, which every log line carries (alertflow/logging.py), and cleared after it.
A task that publishes more tasks (a fan-out step, the due poller) passes its own id on. A task
published with no request id (beat) runs under its own task id, so its lines still group.
"""

from celery.signals import before_task_publish, task_postrun, task_prerun, worker_process_shutdown

from .logging import request_id_var
from .multiproc import mark_process_dead

REQUEST_ID_HEADER = "af_request_id"

_tokens: dict[str, object] = {}


@before_task_publish.connect
def add_request_id(sender=None, headers=None, **kwargs) -> None:
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def request_id_of(request) -> str:
    """The request id a task was published with: a worker puts custom headers on the request
    itself; `Task.apply(headers=...)` (eager) leaves them under `headers`."""
    return getattr(request, REQUEST_ID_HEADER, None) or (getattr(request, "headers", None) or {}).get(
        REQUEST_ID_HEADER, ""
    )


@task_prerun.connect
def enter_request(task_id=None, task=None, **kwargs) -> None:
    request_id = (request_id_of(task.request) if task is not None else "") or task_id or ""
    _tokens[task_id] = request_id_var.set(request_id)


@task_postrun.connect
def leave_request(task_id=None, **kwargs) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        request_id_var.reset(token)
    else:
        request_id_var.set("")


@worker_process_shutdown.connect
def forget_process_metrics(pid=None, **kwargs) -> None:
    """A pool process is exiting: its live gauges stop counting in /metrics."""
    if pid:
        mark_process_dead(pid)
