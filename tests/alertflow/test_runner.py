"""The dev runner's decisions (`manage.py run`), without starting any process."""

import signal
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from alertflow.cpus import usable_cpus
from alertflow.management.commands.run import (
    Addresses,
    banner,
    base_url,
    child_environment,
    describe_exit,
    metrics_directory,
    process_commands,
    read_addresses,
    redis_server_command,
    redis_socket_url,
    reset_metrics_directory,
)
from alertflow.queues import ALL_QUEUES

LOCAL = Addresses(host="127.0.0.1", port=8000, ws_port=8001)
EVERYWHERE = "0.0.0.0"  # noqa: S104 (what a person types as HOST to serve the LAN)


def test_addresses_default_to_localhost_8000_and_the_next_port():
    assert read_addresses({}) == LOCAL


def test_ws_port_follows_port_unless_set():
    assert read_addresses({"HOST": EVERYWHERE, "PORT": "9000"}) == Addresses(EVERYWHERE, 9000, 9001)
    assert read_addresses({"PORT": "9000", "WS_PORT": "9100"}).ws_port == 9100


def test_empty_variables_count_as_unset_like_in_settings():
    assert read_addresses({"HOST": "", "PORT": "", "WS_PORT": ""}) == LOCAL


@pytest.mark.parametrize("environ", [{"PORT": "http"}, {"PORT": "0"}, {"WS_PORT": "70000"}, {"WS_PORT": "8000"}])
def test_bad_ports_are_refused_with_a_message(environ):
    with pytest.raises(CommandError):
        read_addresses(environ)


def test_debug_defaults_to_true_and_secret_key_stays_unset():
    env = child_environment({}, LOCAL, redis_url=None)
    assert env["DEBUG"] == "true"
    assert "SECRET_KEY" not in env


@pytest.mark.parametrize("debug", ["0", "false", "1"])
def test_debug_from_the_environment_is_kept(debug):
    env = child_environment({"DEBUG": debug, "SECRET_KEY": "x"}, LOCAL, redis_url=None)
    assert env["DEBUG"] == debug
    assert env["SECRET_KEY"] == "x"


def test_empty_debug_counts_as_unset():
    assert child_environment({"DEBUG": ""}, LOCAL, redis_url=None)["DEBUG"] == "true"


def test_make_run_allows_private_networks_unless_told_otherwise():
    # The README's walk-through sends through an SMTP server on 127.0.0.1.
    assert child_environment({}, LOCAL, redis_url=None)["ALERTFLOW_ALLOW_PRIVATE_NETWORKS"] == "true"
    env = child_environment({"ALERTFLOW_ALLOW_PRIVATE_NETWORKS": "false"}, LOCAL, redis_url=None)
    assert env["ALERTFLOW_ALLOW_PRIVATE_NETWORKS"] == "false"


def test_public_url_is_the_printed_address_unless_set():
    # Without it, mail under `make run` would carry no one-click unsubscribe link.
    env = child_environment({}, Addresses("127.0.0.1", 8610, 8611), redis_url=None)
    assert env["ALERTFLOW_PUBLIC_URL"] == "http://127.0.0.1:8610"
    env = child_environment({"ALERTFLOW_PUBLIC_URL": "https://af.example.com"}, LOCAL, redis_url=None)
    assert env["ALERTFLOW_PUBLIC_URL"] == "https://af.example.com"


def test_embedded_redis_url_is_exported_to_children():
    env = child_environment({}, LOCAL, redis_url="unix:///srv/af/var/redis.sock")
    assert env["REDIS_URL"] == "unix:///srv/af/var/redis.sock"


def test_redis_url_from_the_environment_is_used_as_is():
    env = child_environment({"REDIS_URL": "redis://cache:6379/3"}, LOCAL, redis_url=None)
    assert env["REDIS_URL"] == "redis://cache:6379/3"


def test_database_url_is_left_to_settings():
    assert "DATABASE_URL" not in child_environment({}, LOCAL, redis_url=None)
    env = child_environment({"DATABASE_URL": "postgres://db/af"}, LOCAL, redis_url=None)
    assert env["DATABASE_URL"] == "postgres://db/af"


def test_ws_url_points_at_the_ws_server_unless_set():
    env = child_environment({}, Addresses("127.0.0.1", 8610, 8611), redis_url=None)
    assert env["ALERTFLOW_WS_URL"] == "ws://127.0.0.1:8611"
    env = child_environment({"ALERTFLOW_WS_URL": "wss://push.example.com"}, LOCAL, redis_url=None)
    assert env["ALERTFLOW_WS_URL"] == "wss://push.example.com"


def test_wildcard_host_is_advertised_as_loopback():
    env = child_environment({}, Addresses(EVERYWHERE, 8000, 8001), redis_url=None)
    assert env["ALERTFLOW_WS_URL"] == "ws://127.0.0.1:8001"
    assert base_url("http", "::", 8000) == "http://[::1]:8000"


def test_allowed_hosts_include_the_host_served_unless_set():
    assert child_environment({}, LOCAL, None)["ALLOWED_HOSTS"] == "localhost,127.0.0.1,[::1]"
    env = child_environment({}, Addresses("192.168.1.20", 8000, 8001), None)
    assert env["ALLOWED_HOSTS"] == "localhost,127.0.0.1,[::1],192.168.1.20"
    assert child_environment({"ALLOWED_HOSTS": "api.example.com"}, LOCAL, None)["ALLOWED_HOSTS"] == "api.example.com"


def test_children_write_unbuffered_and_the_input_is_not_changed():
    environ = {"PATH": "/usr/bin"}
    env = child_environment(environ, LOCAL, redis_url="unix:///tmp/r.sock")
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"] == "/usr/bin"
    assert environ == {"PATH": "/usr/bin"}


def test_embedded_redis_listens_on_a_private_unix_socket_only(tmp_path):
    argv = redis_server_command("/opt/redis-server", tmp_path)
    options = " ".join(argv[1:])
    assert argv[0] == "/opt/redis-server"
    assert "--port 0" in options  # no TCP listener
    assert f"--unixsocket {tmp_path}/redis.sock --unixsocketperm 700" in options
    assert f"--dir {tmp_path} --dbfilename redis.rdb" in options
    assert "--daemonize no" in options  # stays our child, so we can stop it


def test_embedded_redis_save_rule_is_two_arguments(tmp_path):
    # As one argument "60 1", redis-server drops the rule without a word.
    argv = redis_server_command("redis-server", tmp_path)
    index = argv.index("--save")
    assert argv[index + 1 : index + 3] == ["60", "1"]


def test_embedded_redis_url_is_absolute_in_redis_py_spelling():
    url = redis_socket_url(Path("var"))
    assert url.startswith("unix:///")
    assert url.endswith("/var/redis.sock")


def test_processes_run_from_this_virtualenv(tmp_path):
    commands = process_commands(tmp_path, LOCAL, cpus=8)
    assert set(commands) == {"web", "ws", "relay", "worker", "beat"}
    assert commands["web"][0] == str(tmp_path / "gunicorn")
    assert commands["ws"][0] == str(tmp_path / "uvicorn")
    assert commands["worker"][0] == commands["beat"][0] == str(tmp_path / "celery")
    assert commands["relay"] == [str(tmp_path / "python"), "manage.py", "relay"]


def test_web_is_gunicorn_gthread_sized_from_the_cpus(tmp_path):
    web = " ".join(process_commands(tmp_path, Addresses("127.0.0.1", 8610, 8611), cpus=2)["web"])
    assert "--config python:config.gunicorn config.wsgi --bind 127.0.0.1:8610" in web
    assert "--worker-class gthread --workers 2 --threads 4" in web
    assert "--access-logfile -" in web
    assert "--workers 4" in " ".join(process_commands(tmp_path, LOCAL, cpus=32)["web"])


def test_web_binds_ipv6_in_brackets(tmp_path):
    web = process_commands(tmp_path, Addresses("::1", 8000, 8001), cpus=1)["web"]
    assert web[web.index("--bind") + 1] == "[::1]:8000"


def test_ws_is_uvicorn_on_the_asgi_app(tmp_path):
    ws = " ".join(process_commands(tmp_path, Addresses("127.0.0.1", 8610, 8611), cpus=1)["ws"])
    assert "config.asgi:application --host 127.0.0.1 --port 8611" in ws


def test_one_worker_consumes_every_queue(tmp_path):
    worker = process_commands(tmp_path, LOCAL, cpus=3)["worker"]
    assert worker[1:4] == ["-A", "config", "worker"]
    assert worker[worker.index("-Q") + 1].split(",") == ALL_QUEUES
    # Two processes per core (alertflow.queues.WORKER_PROCESSES_PER_CORE), as docker-compose's workers.
    assert worker[worker.index("--concurrency") + 1] == "6"


def test_a_worker_started_without_c_runs_two_processes_per_core():
    # docker-compose's workers give no -c: Celery takes the setting (its own default is one per core).
    from config.celery import app

    assert app.conf.worker_concurrency == 2 * usable_cpus()


def test_beat_uses_the_database_scheduler(tmp_path):
    beat = process_commands(tmp_path, LOCAL, cpus=1)["beat"]
    assert beat[beat.index("--scheduler") + 1] == "django_celery_beat.schedulers:DatabaseScheduler"


def test_banner_says_where_everything_is(tmp_path):
    text = banner(Addresses("127.0.0.1", 8610, 8611), tmp_path, environ={})
    assert "http://127.0.0.1:8610/api/v1/" in text
    assert "http://127.0.0.1:8610/api/docs" in text
    assert "http://127.0.0.1:8610/admin/" in text
    assert "ws://127.0.0.1:8611/ws/" in text
    assert f"{tmp_path}/sinks/" in text


def test_banner_createsuperuser_needs_debug_only_without_a_secret_key(tmp_path):
    assert "DEBUG=true .venv/bin/python manage.py createsuperuser" in banner(LOCAL, tmp_path, environ={})
    text = banner(LOCAL, tmp_path, environ={"SECRET_KEY": "k", "DEBUG": "0"})
    assert "DEBUG=true" not in text
    assert ".venv/bin/python manage.py createsuperuser" in text


def test_exit_descriptions_name_the_signal():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"


def test_worker_and_beat_are_restarted_but_not_in_a_crash_loop():
    from alertflow.management.commands.run import MAX_RESTARTS, RESTART_WINDOW, may_restart

    now = 1000.0
    assert may_restart("worker", [], now)
    assert may_restart("relay", [], now)
    assert may_restart("beat", [now - 1] * (MAX_RESTARTS - 1), now)
    assert not may_restart("worker", [now - 1] * MAX_RESTARTS, now)
    assert may_restart("worker", [now - RESTART_WINDOW - 1] * MAX_RESTARTS, now)


def test_web_ws_and_redis_dying_stops_everything():
    from alertflow.management.commands.run import may_restart

    assert not any(may_restart(name, [], 0.0) for name in ("web", "ws", "redis"))


def test_metrics_directory_is_under_var_unless_the_environment_names_one(tmp_path):
    assert metrics_directory({}, tmp_path) == (tmp_path / "prometheus").resolve()
    assert metrics_directory({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "m")}, tmp_path) == (tmp_path / "m")


def test_a_run_starts_with_no_samples_of_the_last_one(tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_host-12.db").write_bytes(b"old")
    (directory / "gauge_livesum_host-12.db").write_bytes(b"old")
    (directory / "notes.txt").write_text("kept")

    reset_metrics_directory(directory)
    reset_metrics_directory(tmp_path / "new")  # made when missing

    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]
    assert (tmp_path / "new").is_dir()
