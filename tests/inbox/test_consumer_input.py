"""Frames a client sends on `/ws/inbox` get the same input limits as request bodies."""

import pytest
from asgiref.sync import async_to_sync

from .test_consumer import WAIT, connected, token_query

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_frame_nested_too_deep_is_an_invalid_frame_and_the_socket_stays_open(ada):
    deep = "[" * 2000 + "]" * 2000  # within the frame size limit, past json's recursion limit

    async def scenario():
        socket = await connected(token_query(ada))
        await socket.send_to(text_data=deep)
        first = await socket.receive_json_from(WAIT)
        await socket.send_to(text_data='{"action": "sync"}')
        second = await socket.receive_json_from(WAIT)
        await socket.disconnect()
        return first, second

    first, second = async_to_sync(scenario)()
    assert first["code"] == "invalid_frame"
    assert second["type"] == "unread_count"
