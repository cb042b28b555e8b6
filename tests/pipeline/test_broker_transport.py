"""The broker transport (alertflow/broker.py): kombu's Redis transport keeping one redis-py client
per channel for the unacked index and the acks, against a real redis-server."""

import pytest
from kombu import Connection

from alertflow import broker
from config.celery import app

from .conftest import OwnRedis


@pytest.fixture
def tcp_redis(tmp_path):
    server = OwnRedis(tmp_path, tcp=True)
    server.start()
    yield server
    server.process.kill()
    server.process.wait(10)


def receive_and_ack(queue, body: str) -> None:
    queue.put(body)
    message = queue.get(timeout=5)
    assert message.payload == body
    message.ack()


def retrying(connection, call):
    try:
        return call()
    except connection.connection_errors:
        return call()


def test_the_celery_app_connects_through_the_transport_that_keeps_one_client():
    with app.connection_for_write() as connection:
        assert type(connection.transport) is broker.Transport


def test_acks_use_one_redis_client_and_still_work_after_redis_drops_the_connections(tcp_redis):
    with Connection(f"redis://127.0.0.1:{tcp_redis.port}/0", transport=broker.Transport) as connection:
        queue = connection.SimpleQueue("transport-test")
        channel = queue.channel
        receive_and_ack(queue, "first")
        with channel.conn_or_acquire() as kept:
            pass
        receive_and_ack(queue, "second")
        with channel.conn_or_acquire() as again:
            assert again is kept  # the same client for the index writes and acks of both messages
        assert tcp_redis.client.hlen(channel.unacked_key) == 0  # both acked

        queue.put("third")
        message = queue.get(timeout=5)
        assert tcp_redis.client.hlen(channel.unacked_key) == 1  # received: in the unacked index
        tcp_redis.client.execute_command("CLIENT", "KILL", "TYPE", "normal")  # every connection but this one
        # A dead connection fails its first use and redis-py drops it from the pool; the next
        # use connects again.
        retrying(connection, message.ack)

        assert tcp_redis.client.hlen(channel.unacked_key) == 0
        assert tcp_redis.client.zcard(channel.unacked_index_key) == 0
        with channel.conn_or_acquire() as after:
            assert after is kept  # the same pool, reconnected: the same client
        queue.close()
