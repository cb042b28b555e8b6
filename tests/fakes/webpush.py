"""A Web Push service (RFC 8030): the subscription's endpoint URL points here."""

from __future__ import annotations

import base64
import json
import os
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .http import HttpFake, Recorded, Reply


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vapid_keypair() -> tuple[str, ec.EllipticCurvePrivateKey]:
    """A VAPID private key as the application server stores it (base64url raw), and the key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big")), key


class WebPushFake(HttpFake):
    def __init__(self) -> None:
        super().__init__()
        # The browser's side of one subscription: its ECDH key and auth secret (RFC 8291).
        self.browser_key = ec.generate_private_key(ec.SECP256R1())
        self.auth_secret = os.urandom(16)

    def subscription(self, name: str = "sub1") -> str:
        """The PushSubscription JSON a browser hands the page, as stored in Device.token."""
        public = self.browser_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return json.dumps(
            {
                "endpoint": f"{self.url}/push/{name}",
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth_secret)},
            }
        )

    def route(self, request: Recorded) -> Reply:
        if request.method != "POST" or not request.path.startswith("/push/"):
            return Reply(404)
        # RFC 8030 5: 201 Created, Location names the push message resource.
        return Reply(201, b"", {"Location": f"{self.url}/message/{uuid.uuid4().hex}"})

    def fail_next(self, status: int, *, times: int = 1, headers: dict | None = None) -> None:
        self.fail(Reply(status, b"push service says no", headers or {}), times=times, path_contains="/push/")
