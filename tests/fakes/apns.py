"""APNs: `POST /3/device/<token>` (served over HTTP/1.1 here; httpx falls back from HTTP/2)."""

from __future__ import annotations

import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .http import HttpFake, Recorded, Reply

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "com.example.app"


class ApnsFake(HttpFake):
    def __init__(self) -> None:
        super().__init__()
        self.private_key = ec.generate_private_key(ec.SECP256R1())

    @property
    def private_key_pem(self) -> str:
        """The .p8 file's content for this fake's key."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def config(self, **overrides) -> dict:
        return {"team_id": TEAM_ID, "key_id": KEY_ID, "private_key": self.private_key_pem, "topic": TOPIC,
                "api_url": self.url, **overrides}  # fmt: skip

    def route(self, request: Recorded) -> Reply:
        if request.method != "POST" or not request.path.startswith("/3/device/"):
            return Reply.json(404, {"reason": "BadPath"})
        if not request.headers.get("authorization", "").startswith("bearer "):
            return Reply.json(403, {"reason": "MissingProviderToken"})
        # APNs answers 200 with an empty body and the apns-id header (its own, or the one sent).
        return Reply(200, b"", {"apns-id": request.headers.get("apns-id") or str(uuid.uuid4()).upper()})

    def fail_next(self, status: int, reason: str, *, times: int = 1, headers: dict | None = None) -> None:
        body = {"reason": reason}
        if status == 410:
            body["timestamp"] = 1700000000000
        self.fail(Reply.json(status, body, headers), times=times, path_contains="/3/device/")
