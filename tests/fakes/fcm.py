"""FCM HTTP v1 and the Google OAuth token endpoint a service account signs in with."""

from __future__ import annotations

import base64
import functools
import json
import re
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .http import HttpFake, Recorded, Reply

PROJECT = "alertflow-test"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
# google.rpc status names by HTTP status, as FCM v1 answers them.
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip


@functools.cache
def _private_key_pem() -> str:
    """A throwaway RSA key (one per test process: generating one costs ~50 ms)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _jwt_claims(assertion: str) -> dict:
    payload = assertion.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class FcmFake(HttpFake):
    """`POST /token` (OAuth2 JWT bearer grant) and `POST /v1/projects/{project}/messages:send`."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens_issued: list[str] = []

    @property
    def service_account(self) -> dict:
        """A service account JSON whose token_uri is this fake."""
        return {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "fake-key-id",
            "private_key": _private_key_pem(),
            "client_email": f"alertflow@{PROJECT}.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": f"{self.url}/token",
        }

    def route(self, request: Recorded) -> Reply:
        if request.path == "/token":
            form = request.form()
            claims = _jwt_claims(form.get("assertion", "x.e30.x"))
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not claims.get("iss"):
                return Reply.json(400, {"error": "invalid_grant", "error_description": "Invalid JWT"})
            token = f"ya29.fake-{uuid.uuid4().hex}"
            self.tokens_issued.append(token)
            return Reply.json(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})
        match = re.fullmatch(r"/v1/projects/([^/]+)/messages:send", request.path)
        if match and request.method == "POST":
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            if bearer not in self.tokens_issued:
                return self.error(401, "", "Request had invalid authentication credentials.")
            return Reply.json(200, {"name": f"projects/{match[1]}/messages/{uuid.uuid4().int % 10**16}"})
        return Reply.json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

    @staticmethod
    def error(status: int, error_code: str, message: str, *, extra_details=(), headers=None) -> Reply:
        # FCM v1 error body (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
        details = [{"@type": FCM_ERROR, "errorCode": error_code}] if error_code else []
        body = {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN"),
                          "details": [*details, *extra_details]}}  # fmt: skip
        return Reply.json(status, body, headers)

    def fail_send(self, status: int, error_code: str, message: str = "error", *, times: int = 1, **kwargs) -> None:
        self.fail(self.error(status, error_code, message, **kwargs), times=times, path_contains="messages:send")

    @property
    def sent(self) -> list[Recorded]:
        return self.matching(lambda r: r.path.endswith("messages:send"))
