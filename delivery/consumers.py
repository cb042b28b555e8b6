"""`/ws/inbox`: a recipient's live inbox over a websocket.

Protocol (DESIGN section 6). Connect with `?token=<recipient token>` (or `?tenant=&recipient=&hmac=`);
bad, expired or foreign credentials close the socket with code 4401. Then the server sends

    {"type": "unread_count", "count", "unseen_count"}         on connect and after every change
    {"type": "message", "id", "title", "body", "action_url",   for each new in-app message
     "category", "data", "created_at"}
    {"type": "error", "code", "message"}                       for a bad client frame

and the client may send `{"action": "read" | "seen" | "archive", "id"}`, or, after reconnecting,
`{"action": "sync", "after": "<last id it saw>"}` to be sent what it missed (oldest first).

An open socket's credential is checked again before every frame it sends is acted on, when a
change that may revoke it commits (its recipient deleted or renamed, its tenant deactivated or
deleted, the inbox secret rotated: delivery/signals.py), when its token expires, and every
RECHECK_SECONDS in case such a push was lost; one that no longer holds closes the socket with code 4401 and the reason `token_expired` or
`credentials_revoked`, before anything more is sent or done.

Every socket of a recipient (tabs, devices, any ws process) joins one group on the channels-redis
pub/sub layer, and one of its tenant's; writers publish to them after commit (delivery/inbox.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from alertflow import input_limits, metrics
from alertflow.errors import ApiError

from . import inbox, inbox_auth
from .inbox_auth import reader_from_credentials

logger = logging.getLogger(__name__)

# Close codes in the 4000-4999 range are the application's own (RFC 6455 section 7.4.2): 4401
# reads as HTTP's 401 and tells a client to fetch new credentials instead of retrying these.
CLOSE_UNAUTHORIZED = 4401
MAX_FRAME_CHARS = 4096
# How often an open socket checks its credential though nothing told it to: the push of a
# revocation is best-effort (a publish that fails is logged, not retried), and a socket no frame
# arrives on would otherwise never check again. The cached check is one Redis GET.
RECHECK_SECONDS = 60


def credentials(query_string: bytes) -> dict:
    params = parse_qs(query_string.decode("latin-1"))

    def first(name: str) -> str:
        return (params.get(name) or [""])[0]

    return {
        "token": first("token"),
        "tenant": first("tenant"),
        "recipient": first("recipient"),
        "signature": first("hmac"),
    }


class InboxConsumer(AsyncWebsocketConsumer):
    reader = None
    recipient = None
    credentials: dict
    groups_joined: tuple = ()
    counted = False
    watcher = None  # the task that checks the credential at its expiry and every RECHECK_SECONDS

    async def connect(self):
        self.credentials = credentials(self.scope["query_string"])
        reader = await database_sync_to_async(reader_from_credentials)(**self.credentials)
        # Accepted first, then closed: a close before the handshake completes is an HTTP 403 and
        # the client never sees the code that says why.
        await self.accept()
        if reader is None:
            await self.close(code=CLOSE_UNAUTHORIZED, reason=inbox_auth.INVALID)
            return
        self.reader, self.recipient = reader, reader.recipient
        metrics.WEBSOCKETS.inc()
        self.counted = True
        tenant_id = self.recipient.tenant_id
        self.groups_joined = (inbox.group_name(tenant_id, self.recipient.pk), inbox.group_name(tenant_id))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.watcher = asyncio.get_running_loop().create_task(self.watch())
        counted = await database_sync_to_async(inbox.counts)(self.recipient.pk)
        await self.send_json({"type": "unread_count", **counted})

    async def disconnect(self, code):
        if self.counted:
            metrics.WEBSOCKETS.dec()
            self.counted = False
        await self.leave()

    async def leave(self) -> None:
        """Hear nothing more: out of the groups, the watcher stopped."""
        if self.watcher is not None and self.watcher is not asyncio.current_task():
            self.watcher.cancel()
        self.watcher = None
        groups, self.groups_joined = self.groups_joined, ()
        for group in groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- The credential, after connect ---------------------------------------------------------

    async def authorized(self) -> bool:
        """Whether the socket's credential still holds (inbox_auth.still_valid: one Redis GET
        while nothing changed); if not, the socket is closed and False returned."""
        if self.reader is None:
            return False
        reason = await database_sync_to_async(inbox_auth.still_valid)(self.reader, self.credentials)
        if reason:
            await self.revoke(reason)
        return not reason

    def expired(self) -> bool:
        return self.reader is not None and self.reader.expires is not None and self.reader.expires <= time.time()

    async def revoke(self, reason: str) -> None:
        """Close with 4401 and `reason`: the client must get a new credential, not retry this one.
        Nothing more is sent or done for the socket's frames, whatever is still on its way."""
        self.reader = self.recipient = None
        await self.close(code=CLOSE_UNAUTHORIZED, reason=reason)
        await self.leave()

    async def watch(self) -> None:
        """Check the credential when its token expires and every RECHECK_SECONDS, though no
        frame arrives and no push did: closed at its expiry, and within about two intervals of a
        revocation whose push was lost (one for the check, one for the cache's backstop)."""
        while self.reader is not None:
            wake = time.time() + RECHECK_SECONDS
            if self.reader.expires is not None:
                wake = min(wake, self.reader.expires)
            await asyncio.sleep(max(0.0, wake - time.time()))
            try:
                await self.authorized()
            except DatabaseError:
                # The next interval tries again; an expiry needs no query (still_valid).
                logger.warning("Checking an inbox socket's credential failed", exc_info=True)

    # --- Frames ----------------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.recipient is None or not await self.authorized():
            return
        frame = self.parse(text_data)
        if frame is None:
            await self.error("invalid_frame", 'Send one JSON object, e.g. {"action": "read", "id": "…"}.')
            return
        action, item_id = frame.get("action"), frame.get("id")
        if action == "sync":
            await self.sync(frame.get("after"))
        elif action in inbox.SOCKET_ACTIONS:
            if not self.valid_id(item_id):
                await self.error("not_found", "No such item in this inbox.")
                return
            item = await database_sync_to_async(inbox.act)(self.recipient, item_id, action)
            if item is None:
                await self.error("not_found", "No such item in this inbox.")
            # The new counts reach this socket through the group, with the recipient's other tabs.
        else:
            await self.error("unknown_action", f"`action` must be one of {', '.join((*inbox.SOCKET_ACTIONS, 'sync'))}.")

    async def sync(self, after):
        after = after if self.valid_id(after) else None
        items = await database_sync_to_async(inbox.missed)(self.recipient, after)
        for item in items:
            await self.send_json(inbox.message_event(item))
        counted = await database_sync_to_async(inbox.counts)(self.recipient.pk)
        await self.send_json({"type": "unread_count", **counted})

    # --- Group events (delivery/inbox.py publishes them) -------------------------------------

    async def inbox_message(self, event):
        if await self.may_push():
            await self.send_json(event["message"])

    async def inbox_counts(self, event):
        if await self.may_push():
            await self.send_json(event["counts"])

    async def inbox_recheck(self, event):
        """Something this socket's credential may stand on changed (inbox_auth.credentials_changed)."""
        if self.reader is None or (event.get("kind") == "hmac" and self.credentials["token"]):
            return
        await self.authorized()

    async def may_push(self) -> bool:
        """Whether an event may go out: not after the socket was closed, nor past its token's
        expiry (checked here too, at no cost, in case the timer has not run yet)."""
        if self.reader is None:
            return False
        if self.expired():
            await self.revoke(inbox_auth.EXPIRED)
            return False
        return True

    # --- Helpers ---------------------------------------------------------------------------

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    async def error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    @staticmethod
    def parse(text_data) -> dict | None:
        """The client's frame as a JSON object, or None for anything else."""
        if text_data is None or len(text_data) > MAX_FRAME_CHARS:
            return None
        try:
            frame = input_limits.loads(text_data, field="frame")  # depth and NUL, as for bodies
        except (ValueError, ApiError):
            return None
        return frame if isinstance(frame, dict) else None

    @staticmethod
    def valid_id(value) -> bool:
        try:
            uuid.UUID(str(value))
        except ValueError:
            return False
        return isinstance(value, str)
