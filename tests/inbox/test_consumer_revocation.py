"""An open `/ws/inbox` socket does not outlive its credential: a token's expiry, a deleted
recipient, a deactivated or deleted tenant and a rotated inbox secret close it with 4401 (the
push through the channels-redis layer, or the check of its next frame), and nothing of another
tenant's is touched."""

import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from delivery import consumers, inbox, inbox_auth
from delivery.inbox_auth import issue_token, reader_from_credentials, sign_external_id, still_valid
from delivery.models import InboxItem

from .conftest import send_inapp
from .test_consumer import WAIT, connected, token_query

pytestmark = pytest.mark.django_db(transaction=True)


def hmac_query(client, tenant, external_id: str) -> str:
    secret = client.get("/api/v1/inbox-secret").json()["secret"]
    return f"tenant={tenant.pk}&recipient={external_id}&hmac={sign_external_id(secret, external_id)}"


async def closed_with(socket) -> tuple[int, str]:
    """The code and reason the server closed `socket` with (within WAIT seconds)."""
    closing = await socket.receive_output(WAIT)
    assert closing["type"] == "websocket.close", closing
    await socket.disconnect()
    return closing["code"], closing.get("reason", "")


async def still_receives(socket, client, title: str) -> bool:
    """Whether `socket` is open and gets a message sent to its recipient now (through `client`,
    an API key of the recipient's tenant; the recipient's external id is "ada")."""
    await sync_to_async(send_inapp)(client, title=title)
    message = await socket.receive_json_from(WAIT)
    await socket.receive_json_from(WAIT)  # the counts that follow it
    await socket.disconnect()
    return (message["type"], message["title"]) == ("message", title)


REVOKED = (4401, inbox_auth.REVOKED)


def test_deleting_the_recipient_closes_its_sockets_and_no_others(admin, outsider, ada, bob, stranger):
    async def scenario():
        ada_tabs = [await connected(token_query(ada)) for _ in range(2)]
        bob_socket, stranger_socket = await connected(token_query(bob)), await connected(token_query(stranger))
        deleted = await sync_to_async(admin.delete)("/api/v1/recipients/ada")
        assert deleted.status_code == 204
        closes = [await closed_with(tab) for tab in ada_tabs]
        bob_silent = await bob_socket.receive_nothing(0.5)
        await bob_socket.disconnect()
        return closes, bob_silent, await still_receives(stranger_socket, outsider, "still yours")

    closes, bob_silent, stranger_receives = async_to_sync(scenario)()
    assert closes == [REVOKED, REVOKED]
    assert bob_silent  # the same tenant's other recipient keeps its socket
    assert stranger_receives  # another tenant's recipient with the same external id too


def test_deactivating_a_tenant_closes_every_socket_of_it_and_none_of_another(
    owner, outsider, tenant, ada, bob, stranger, outsider_tenant
):
    bob_hmac, stranger_hmac = hmac_query(owner, tenant, "bob"), hmac_query(outsider, outsider_tenant, "ada")

    def deactivate():
        tenant.active = False
        tenant.save()  # as the admin's change page does

    async def scenario():
        ours = [await connected(token_query(ada)), await connected(bob_hmac)]
        theirs = [await connected(token_query(stranger)), await connected(stranger_hmac)]
        await sync_to_async(deactivate)()
        closes = [await closed_with(socket) for socket in ours]
        await sync_to_async(send_inapp)(outsider, title="business as usual")
        titles = [(await socket.receive_json_from(WAIT))["title"] for socket in theirs]
        for socket in theirs:
            await socket.disconnect()
        return closes, titles

    closes, titles = async_to_sync(scenario)()
    assert closes == [REVOKED, REVOKED]
    assert titles == ["business as usual"] * 2  # the other tenant's token and HMAC sockets are open


def test_deleting_a_tenant_closes_its_sockets(tenant, ada, bob, stranger):
    async def scenario():
        ours = [await connected(token_query(ada)), await connected(token_query(bob))]
        stranger_socket = await connected(token_query(stranger))
        await sync_to_async(tenant.delete)()
        closes = [await closed_with(socket) for socket in ours]
        stranger_silent = await stranger_socket.receive_nothing(0.5)
        await stranger_socket.disconnect()
        return closes, stranger_silent

    closes, stranger_silent = async_to_sync(scenario)()
    assert closes == [REVOKED, REVOKED]
    assert stranger_silent  # not closed


def test_rotating_the_inbox_secret_closes_the_hmac_sockets_of_that_tenant_only(
    owner, admin, outsider, tenant, ada, stranger, outsider_tenant
):
    ada_hmac, stranger_hmac = hmac_query(owner, tenant, "ada"), hmac_query(outsider, outsider_tenant, "ada")

    async def scenario():
        hmac_socket, token_socket = await connected(ada_hmac), await connected(token_query(ada))
        stranger_socket = await connected(stranger_hmac)
        rotated = await sync_to_async(owner.post)("/api/v1/inbox-secret")
        assert rotated.status_code == 201
        close = await closed_with(hmac_socket)
        return (
            close,
            await still_receives(token_socket, admin, "token"),
            await still_receives(stranger_socket, outsider, "their secret did not change"),
        )

    close, token_receives, stranger_receives = async_to_sync(scenario)()
    assert close == REVOKED
    assert token_receives  # a recipient token does not depend on the secret
    assert stranger_receives


def test_a_token_is_closed_when_it_expires_though_no_frame_arrives(ada, settings):
    # Issued so that it expires within 0.5-1.5 s (a token's expiry is a whole second).
    token, expires = issue_token(ada, now=time.time() - settings.ALERTFLOW_RECIPIENT_TOKEN_SECONDS + 1.5)

    async def scenario():
        socket = await connected(f"token={token}")
        close = await closed_with(socket)
        return close, time.time()

    close, closed_at = async_to_sync(scenario)()
    assert close == (4401, inbox_auth.EXPIRED)
    assert expires.timestamp() <= closed_at < expires.timestamp() + 2


def test_a_frame_after_a_revocation_whose_push_was_lost_is_refused(owner, admin, tenant, ada, monkeypatch):
    item_id = send_inapp(admin)
    query = hmac_query(owner, tenant, "ada")
    # The rotation's push to the open sockets is lost (Redis dropped it, or its publish failed,
    # which `publish` logs and swallows): the socket's next frame must still find the HMAC dead.
    monkeypatch.setattr(inbox, "announce_recheck", lambda *args, **kwargs: None, raising=False)

    async def scenario():
        socket = await connected(query)
        await socket.send_json_to({"action": "sync"})  # the check's cache is warm and valid now
        assert (await socket.receive_json_from(WAIT))["type"] == "message"
        assert (await socket.receive_json_from(WAIT))["type"] == "unread_count"
        assert (await sync_to_async(owner.post)("/api/v1/inbox-secret")).status_code == 201
        assert await socket.receive_nothing(0.3)  # no push reached it
        await socket.send_json_to({"action": "read", "id": item_id})
        return await closed_with(socket)

    assert async_to_sync(scenario)() == REVOKED
    assert InboxItem.objects.get(pk=item_id).read is None  # the action was not carried out


def test_a_socket_whose_revocation_push_was_lost_is_closed_at_its_next_periodic_check(owner, tenant, ada, monkeypatch):
    query = hmac_query(owner, tenant, "ada")
    monkeypatch.setattr(inbox, "announce_recheck", lambda *args, **kwargs: None, raising=False)  # lost
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.5, raising=False)

    async def scenario():
        socket = await connected(query)
        assert await socket.receive_nothing(1.2)  # checked twice meanwhile: still valid, left open
        assert (await sync_to_async(owner.post)("/api/v1/inbox-secret")).status_code == 201
        return await closed_with(socket)  # no frame sent

    assert async_to_sync(scenario)() == REVOKED


def test_checking_an_open_sockets_credential_costs_no_query_until_what_it_stands_on_changes(
    ada, stranger, django_assert_num_queries
):
    def credentials(recipient) -> dict:
        return {"token": issue_token(recipient)[0], "tenant": "", "recipient": "", "signature": ""}

    ours, theirs = credentials(ada), credentials(stranger)
    reader, their_reader = reader_from_credentials(**ours), reader_from_credentials(**theirs)
    assert still_valid(reader, ours) == still_valid(their_reader, theirs) == ""  # read once, cached
    with django_assert_num_queries(0):
        assert still_valid(reader, ours) == still_valid(their_reader, theirs) == ""

    ada.delete()

    assert still_valid(reader, ours) == inbox_auth.REVOKED
    with django_assert_num_queries(0):  # another tenant's cached check is not outdated
        assert still_valid(their_reader, theirs) == ""
