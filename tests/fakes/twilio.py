"""Twilio's Messages API: `POST /2010-04-01/Accounts/{sid}/Messages.json`."""

from __future__ import annotations

import base64
import re
import uuid

from .http import HttpFake, Recorded, Reply

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "twilio-test-token"


class TwilioFake(HttpFake):
    """Checks HTTP basic auth (account SID : auth token) and answers Twilio's JSON shapes."""

    account_sid = ACCOUNT_SID
    auth_token = AUTH_TOKEN

    def route(self, request: Recorded) -> Reply:
        match = re.fullmatch(r"/2010-04-01/Accounts/(AC\w+)/Messages\.json", request.path)
        if request.method != "POST" or not match:
            return self.error(404, 20404, "The requested resource was not found")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("authorization") != expected or match[1] != self.account_sid:
            return self.error(401, 20003, "Authenticate")
        form = request.form()
        sid = "SM" + uuid.uuid4().hex
        return Reply.json(
            201,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": form.get("To"),
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form.get("Body"),
                "status": "queued" if form.get("From") else "accepted",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "price": None,
                "error_code": None,
                "error_message": None,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            },
        )

    @staticmethod
    def error(status: int, code: int, message: str, headers: dict | None = None) -> Reply:
        # Twilio's error body (https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions).
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return Reply.json(status, body, headers)

    def fail_next(
        self, status: int, code: int, message: str = "error", *, retry_after: str = "", times: int = 1
    ) -> None:
        headers = {"Retry-After": retry_after} if retry_after else None
        self.fail(self.error(status, code, message, headers), times=times, path_contains="/Messages.json")

    @property
    def sent(self) -> list[Recorded]:
        return self.matching(lambda r: r.path.endswith("/Messages.json"))
