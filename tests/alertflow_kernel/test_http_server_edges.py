"""HTTP edges through the real server stack: gunicorn started exactly as `make run` starts it.

A Django test client never sees chunked framing or a reused connection; these requests go over a
socket to gunicorn, which serves the test database (committed rows, hence `transactional_db`).
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from alertflow.management.commands.run import Addresses, process_commands
from bench.processes import free_port, port_open, wait_for
from tests.factories import TenantFactory, api_key

BODY_LIMIT = 4096


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    """gunicorn on the test database, started as `make run` starts it; yields its port."""
    port = free_port()
    web = process_commands(Path(sys.executable).parent, Addresses("127.0.0.1", port, port + 1), cpus=1)["web"]
    with django_db_blocker.unblock():
        db = connection.settings_dict
    env = {
        **os.environ,
        "DEBUG": "1",  # as under `make run`
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "ALERTFLOW_MAX_BODY_BYTES": str(BODY_LIMIT),
        # No connection outlives its request, so none holds the test database at teardown.
        "DB_CONN_MAX_AGE": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(web, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if not wait_for(lambda: port_open(port), 30):
                pytest.fail("gunicorn did not start: " + log_path.read_text()[-2000:])
            yield port
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # its own session: the master and its workers
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def exchange(sock: socket.socket, request: bytes) -> http.client.HTTPResponse:
    """Send one request on `sock` and read its whole response."""
    sock.sendall(request)
    response = http.client.HTTPResponse(sock, method=request.split(b" ", 1)[0].decode())
    response.begin()
    response.body = response.read()
    return response


def chunked(body: bytes, size: int = 7) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def test_chunked_body_is_read_not_taken_as_empty(server, transactional_db):
    _, secret = api_key(TenantFactory())
    body = b'{"email": "chunky@example.com", "name": "Chunky"}'
    request = (
        b"PUT /api/v1/recipients/chunky HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"X-API-Key: " + secret.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body)
    )

    with connect(server) as sock:
        response = exchange(sock, request)

    assert response.status in (200, 201), response.body
    assert response.getheader("Content-Type") == "application/json"
    assert b'"chunky@example.com"' in response.body


def test_chunked_body_over_the_limit_is_413_and_the_connection_closes(server, transactional_db):
    _, secret = api_key(TenantFactory())
    body = b'{"name": "' + b"x" * (BODY_LIMIT * 4) + b'"}'
    request = (
        b"PUT /api/v1/recipients/big HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + secret.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body, 1024)
    )

    with connect(server) as sock:
        response = exchange(sock, request)

    assert response.status == 413
    assert response.getheader("Connection") == "close"


def test_after_a_413_the_connection_is_closed_or_still_answers(server):
    too_big = b"x" * (BODY_LIMIT * 40)
    refused = (
        b"POST /api/v1/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(too_big) + too_big
    )
    health = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    with connect(server) as sock:
        first = exchange(sock, refused)
        assert first.status == 413
        assert first.getheader("Content-Type") == "application/json"
        if first.getheader("Connection", "").lower() == "close":
            assert sock.recv(1) == b""  # and it did close
        else:
            # The server promised to keep the connection: the next request must be answered.
            assert exchange(sock, health).status == 200


def test_an_encoded_slash_in_an_id_is_a_json_404_under_debug(server, transactional_db):
    _, secret = api_key(TenantFactory())
    request = b"GET /api/v1/recipients/a%2Fb HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + secret.encode() + b"\r\n\r\n"

    with connect(server) as sock:
        response = exchange(sock, request)

    assert response.status == 404
    assert response.getheader("Content-Type") == "application/json"
    assert b'"not_found"' in response.body
