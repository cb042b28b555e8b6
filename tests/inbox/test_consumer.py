"""`/ws/inbox` with Channels' WebsocketCommunicator against the real Redis channel layer, and a
second ws process (uvicorn in a subprocess) receiving the same messages."""

import asyncio
import json
import time

import pytest
import websockets
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

from config.asgi import application
from delivery.inbox_auth import issue_token, sign_external_id
from delivery.models import InboxItem
from notifications.models import Message

from .conftest import send_inapp
from .wsserver import WsServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 5  # seconds a pushed frame may take


def communicator(query: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/inbox?{query}")


def token_query(recipient) -> str:
    return f"token={issue_token(recipient)[0]}"


async def connected(query: str) -> WebsocketCommunicator:
    """A socket past its handshake and its first counts frame."""
    socket = communicator(query)
    is_open, _ = await socket.connect()
    assert is_open
    assert (await socket.receive_json_from(WAIT))["type"] == "unread_count"
    return socket


async def refused_with(query: str) -> int:
    socket = communicator(query)
    await socket.connect()
    closing = await socket.receive_output(WAIT)
    await socket.disconnect()
    assert closing["type"] == "websocket.close"
    return closing["code"]


def test_bad_expired_or_foreign_credentials_are_closed_with_4401(owner, outsider, tenant, ada, stranger, settings):
    expired, _ = issue_token(ada, now=time.time() - settings.ALERTFLOW_RECIPIENT_TOKEN_SECONDS - 1)
    their_secret = outsider.get("/api/v1/inbox-secret").json()["secret"]
    queries = [
        "",
        "token=rt_garbage",
        f"token={expired}",
        f"token={issue_token(ada)[0][:-3]}abc",
        # The other tenant's secret signing our recipient's id.
        f"tenant={tenant.pk}&recipient=ada&hmac={sign_external_id(their_secret, 'ada')}",
    ]

    async def scenario():
        return [await refused_with(query) for query in queries]

    assert async_to_sync(scenario)() == [4401] * len(queries)


def test_hmac_credentials_connect(owner, tenant, ada):
    secret = owner.get("/api/v1/inbox-secret").json()["secret"]

    async def scenario():
        socket = await connected(f"tenant={tenant.pk}&recipient=ada&hmac={sign_external_id(secret, 'ada')}")
        await socket.disconnect()

    async_to_sync(scenario)()


def test_connect_sends_the_exact_counts(admin, ada):
    send_inapp(admin)
    send_inapp(admin)

    async def scenario():
        socket = communicator(token_query(ada))
        await socket.connect()
        first = await socket.receive_json_from(WAIT)
        await socket.disconnect()
        return first

    assert async_to_sync(scenario)() == {"type": "unread_count", "count": 2, "unseen_count": 2}


def test_a_new_message_reaches_every_tab_of_its_recipient_and_nobody_else(admin, ada, bob, stranger):
    async def scenario():
        tabs = [await connected(token_query(ada)) for _ in range(2)]
        others = [await connected(token_query(bob)), await connected(token_query(stranger))]
        item_id = await sync_to_async(send_inapp)(admin, title="Deploy done", body="v2 is live")
        frames = [[await tab.receive_json_from(WAIT), await tab.receive_json_from(WAIT)] for tab in tabs]
        silent = [await other.receive_nothing(0.5) for other in others]
        for socket in tabs + others:
            await socket.disconnect()
        return item_id, frames, silent

    item_id, frames, silent = async_to_sync(scenario)()

    for message, counts in frames:
        assert message["type"] == "message"
        assert (message["id"], message["title"], message["body"]) == (item_id, "Deploy done", "v2 is live")
        assert (message["action_url"], message["data"], message["category"]) == ("https://app.test/x", {"k": "v"}, "")
        assert message["created_at"].endswith("Z")
        assert counts == {"type": "unread_count", "count": 1, "unseen_count": 1}
    assert silent == [True, True]


def test_read_through_the_socket_updates_every_tab(admin, ada):
    item_id = send_inapp(admin)

    async def scenario():
        tab, other_tab = await connected(token_query(ada)), await connected(token_query(ada))
        await tab.send_json_to({"action": "read", "id": item_id})
        counts = [await tab.receive_json_from(WAIT), await other_tab.receive_json_from(WAIT)]
        await tab.disconnect()
        await other_tab.disconnect()
        return counts

    assert async_to_sync(scenario)() == [{"type": "unread_count", "count": 0, "unseen_count": 1}] * 2
    assert Message.objects.get(pk=item_id).status == Message.Status.READ


def test_a_socket_cannot_touch_another_recipients_item(admin, ada, bob):
    item_id = send_inapp(admin)  # Ada's

    async def scenario():
        socket = await connected(token_query(bob))
        replies = []
        for frame in ({"action": "archive", "id": item_id}, {"action": "read", "id": "nope"}):
            await socket.send_json_to(frame)
            replies.append((await socket.receive_json_from(WAIT))["code"])
        await socket.send_to(text_data="not json")
        replies.append((await socket.receive_json_from(WAIT))["code"])
        await socket.send_json_to({"action": "delete", "id": item_id})
        replies.append((await socket.receive_json_from(WAIT))["code"])
        await socket.disconnect()
        return replies

    assert async_to_sync(scenario)() == ["not_found", "not_found", "invalid_frame", "unknown_action"]
    item = InboxItem.objects.get(pk=item_id)
    assert (item.archived, item.read) == (None, None)


def test_a_reconnecting_client_gets_what_it_missed_since_its_last_id(admin, ada):
    seen = send_inapp(admin, title="seen")
    missed = [send_inapp(admin, title=f"missed {i}") for i in range(3)]

    async def scenario():
        socket = await connected(token_query(ada))
        await socket.send_json_to({"action": "sync", "after": seen})
        frames = [await socket.receive_json_from(WAIT) for _ in range(4)]
        await socket.disconnect()
        return frames

    *messages, counts = async_to_sync(scenario)()
    assert [m["id"] for m in messages] == missed  # oldest first
    assert counts == {"type": "unread_count", "count": 4, "unseen_count": 4}


def test_sockets_on_two_ws_processes_both_receive(admin, ada):
    """One consumer in this process, one in a separate uvicorn process: the group crosses them."""
    query = token_query(ada)

    async def scenario(server_url):
        local = await connected(query)
        async with websockets.connect(f"{server_url}/ws/inbox?{query}") as remote:
            assert json.loads(await asyncio.wait_for(remote.recv(), WAIT))["type"] == "unread_count"
            item_id = await sync_to_async(send_inapp)(admin, title="Both")
            remote_frame = json.loads(await asyncio.wait_for(remote.recv(), WAIT))
        local_frame = await local.receive_json_from(WAIT)
        await local.disconnect()
        async with websockets.connect(f"{server_url}/ws/inbox?token=rt_forged") as forged:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(forged.recv(), WAIT)
        return item_id, local_frame, remote_frame, closed.value.rcvd.code

    with WsServer() as server:
        item_id, local_frame, remote_frame, refused = async_to_sync(scenario)(server.url)

    assert (local_frame["type"], local_frame["id"]) == ("message", item_id)
    assert (remote_frame["type"], remote_frame["id"], remote_frame["title"]) == ("message", item_id, "Both")
    assert refused == 4401  # the other process refuses forged tokens the same way


def test_open_sockets_are_counted_and_uncounted(ada):
    from prometheus_client import REGISTRY

    def open_sockets() -> float:
        return REGISTRY.get_sample_value("alertflow_websocket_connections") or 0.0

    before = open_sockets()

    async def scenario():
        first, second = await connected(token_query(ada)), await connected(token_query(ada))
        refused = await refused_with("token=rt_garbage")  # never counted
        during = open_sockets()
        await first.disconnect()
        after_one = open_sockets()
        await second.disconnect()
        return refused, during, after_one

    refused, during, after_one = async_to_sync(scenario)()

    assert refused == 4401
    assert (during, after_one, open_sockets()) == (before + 2, before + 1, before)
