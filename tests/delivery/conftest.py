import socket

import pytest

from tests.fakes.fixtures import *  # noqa: F403

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None}


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Fail the test if anything (an SDK's background thread included) resolves a non-local host."""
    attempts = []
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in LOCAL_HOSTS and not str(host).startswith("127."):
            attempts.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"tests may not reach {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    yield
    assert not attempts, f"tried to reach the network: {sorted(set(attempts))}"


@pytest.fixture
def var_dir(settings, tmp_path):
    """A fresh VAR_DIR, so console sinks write where the test can read them."""
    settings.VAR_DIR = tmp_path
    return tmp_path
