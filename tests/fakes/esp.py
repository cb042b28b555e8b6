"""Email service providers' send APIs, as anymail calls them: SendGrid, Mailgun, Postmark, SES v2."""

from __future__ import annotations

import re
import uuid

from .http import HttpFake, Recorded, Reply

# Credentials the fake takes for each kind: a provider config is these, a `from_email` and
# `api_url` (`EspFake.config`).
CREDENTIALS = {
    "sendgrid": {"api_key": "SG.test"},
    "mailgun": {"api_key": "key-test", "sender_domain": "mg.example.com"},
    "postmark": {"server_token": "pm-token"},
    "amazon_ses": {"access_key_id": "AKIDTEST", "secret_access_key": "secret", "region": "eu-west-1"},
}


class EspFake(HttpFake):
    """`api_url(kind)` gives the base URL to put in a provider's config; `config(kind)` a whole
    provider config that sends to this fake."""

    def api_url(self, kind: str) -> str:
        return {"sendgrid": f"{self.url}/v3", "mailgun": f"{self.url}/v3", "postmark": self.url,
                "amazon_ses": self.url}[kind]  # fmt: skip

    def config(self, kind: str, from_email: str = "alerts@example.com") -> dict:
        return {**CREDENTIALS[kind], "from_email": from_email, "api_url": self.api_url(kind)}

    def route(self, request: Recorded) -> Reply:
        if request.path == "/v3/mail/send":
            # SendGrid v3: 202 with an empty body; X-Message-Id names the request, not each message.
            return Reply(202, b"", {"X-Message-Id": uuid.uuid4().hex[:22]})
        if match := re.fullmatch(r"/v3/([^/]+)/messages", request.path):
            return Reply.json(200, {"id": f"<{uuid.uuid4().hex}@{match[1]}>", "message": "Queued. Thank you."})
        if request.path == "/email":
            to = request.json().get("To", "")
            return Reply.json(200, {"To": to, "SubmittedAt": "2026-01-01T00:00:00Z", "MessageID": str(uuid.uuid4()),
                                    "ErrorCode": 0, "Message": "OK"})  # fmt: skip
        if request.path == "/v2/email/outbound-emails":
            return Reply.json(200, {"MessageId": f"0100{uuid.uuid4().hex}-000000"})
        return Reply.json(404, {"errors": [{"message": "not found"}]})

    def fail_next(self, status: int, body: dict | None = None, *, headers: dict | None = None, times: int = 1) -> None:
        self.fail(Reply.json(status, body or {"errors": [{"message": "fake failure"}]}, headers), times=times)
