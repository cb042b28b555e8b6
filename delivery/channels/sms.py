"""SMS providers: Twilio through its SDK, and a JSON-lines sink for development."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from .base import (
    Code,
    Inbound,
    Outgoing,
    Provider,
    ProviderError,
    Receipt,
    ReceiptRefused,
    Sent,
    append_json_line,
    http_status_error,
    optional_str,
    optional_timeout,
    parse_retry_after,
    reject_unknown,
    require_str,
    sink_path,
)

logger = logging.getLogger(__name__)

E164 = re.compile(r"^\+[1-9]\d{1,14}$")


class SmsProvider(Provider):
    channel = "sms"

    @staticmethod
    def text(out: Outgoing) -> str:
        return str(out.content.get("text") or "")


# --- Twilio ---------------------------------------------------------------------------------------


class _TwilioHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, aimed at `base_url` instead of api.twilio.com.

    The SDK builds absolute `https://api.twilio.com/...` URLs (twilio/rest/api/v2010, `Domain`)
    and hands them to `HttpClient.request`: rewriting the prefix here is the one seam where the
    whole SDK, auth and form encoding included, runs unchanged against a local fake. It also
    keeps the last response's headers, because `TwilioRestException` drops them and a 429's
    `Retry-After` is worth keeping.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self.last_headers: dict = {}

    def request(self, method: str, url: str, *args, **kwargs) -> Response:
        parts = urlsplit(url)
        # Any Twilio host: TWILIO_EDGE/TWILIO_REGION in the environment turn api.twilio.com into
        # api.<edge>.<region>.twilio.com (twilio/base/client_base.py, get_hostname).
        if self.base_url and parts.scheme == "https" and (parts.hostname or "").endswith(".twilio.com"):
            url = self.base_url + urlunsplit(("", "", parts.path, parts.query, parts.fragment))
        self.last_headers = {}
        response = super().request(method, url, *args, **kwargs)
        self.last_headers = response.headers or {}
        return response

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


class TwilioProvider(SmsProvider):
    """Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{sid}/Messages.json`."""

    kind = "twilio"
    secret_fields = ("auth_token",)

    # Twilio error codes (https://www.twilio.com/docs/api/errors) that a status alone does not
    # say: whose fault a refusal is (the number's or our account's), or that it may pass.
    PERMANENT_CODES = {
        21211: Code.INVALID_ADDRESS,  # Invalid 'To' Phone Number
        21614: Code.INVALID_ADDRESS,  # 'To' number is not a valid mobile number
        21612: Code.INVALID_ADDRESS,  # The 'To' phone number is not currently reachable via SMS
        21610: Code.UNSUBSCRIBED,  # Attempt to send to unsubscribed recipient (replied STOP)
        20003: Code.AUTH,  # Authentication Error: a wrong or revoked auth token
        20005: Code.ACCOUNT,  # Account not active (suspended or closed)
        21608: Code.ACCOUNT,  # A trial account may only send to verified numbers
        21212: Code.CONFIGURATION,  # Invalid 'From' Number
        21606: Code.CONFIGURATION,  # The 'From' number is not an SMS-capable number of this account
        21408: Code.CONFIGURATION,  # Permission to send to this region is not enabled
    }
    TRANSIENT_CODES = {
        20429: Code.RATE_LIMITED,  # Too Many Requests
        20500: Code.UNAVAILABLE,  # Internal Server Error
        20503: Code.UNAVAILABLE,  # Service Unavailable
    }

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        config = reject_unknown(
            config, ("account_sid", "auth_token", "from_number", "messaging_service_sid", "timeout")
        )
        account_sid = require_str(config, "account_sid")
        if not re.fullmatch(r"AC[0-9a-fA-F]{32}", account_sid):
            raise ValueError("account_sid: must look like AC followed by 32 hex digits")
        from_number = optional_str(config, "from_number")
        service_sid = optional_str(config, "messaging_service_sid")
        if bool(from_number) == bool(service_sid):
            raise ValueError("from_number: set exactly one of from_number and messaging_service_sid")
        if from_number and not E164.match(from_number):
            raise ValueError("from_number: must be an E.164 number such as +14155550100")
        if service_sid and not re.fullmatch(r"MG[0-9a-fA-F]{32}", service_sid):
            raise ValueError("messaging_service_sid: must look like MG followed by 32 hex digits")
        return {
            "account_sid": account_sid,
            "auth_token": require_str(config, "auth_token"),
            "from_number": from_number,
            "messaging_service_sid": service_sid,
            "timeout": optional_timeout(config),
        }

    def __init__(self, config: dict, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._http: _TwilioHttpClient | None = None
        self._client: Client | None = None

    def open(self) -> None:
        # One requests.Session (connection pool) for the batch; no network until the first send.
        self._http = _TwilioHttpClient(settings.ALERTFLOW_TWILIO_BASE_URL, self.config["timeout"])
        self._client = Client(self.config["account_sid"], self.config["auth_token"], http_client=self._http)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = self._client = None

    def send(self, out: Outgoing) -> Sent:
        if self._client is None:
            with self:
                return self.send(out)
        assert self._http is not None
        params = {"to": out.to, "body": self.text(out)}
        if self.config["messaging_service_sid"] and not out.sender:
            params["messaging_service_sid"] = self.config["messaging_service_sid"]
        else:
            params["from_"] = out.sender or self.config["from_number"]
        if self.receipt_url:
            # Twilio posts this message's status changes there, signed over the whole URL
            # (read_receipts). Our message id rides along: a callback that beats the worker's
            # record of the SID still finds its message.
            params["status_callback"] = f"{self.receipt_url}?{urlencode({'message': out.message_id})}"
        try:
            message = self._client.messages.create(**params)
        except TwilioException as exc:
            raise self.classify(exc, self._http.last_headers) from exc
        except requests.RequestException as exc:
            # ConnectionError, Timeout: the SDK lets requests' exceptions through.
            raise ProviderError(f"Twilio unreachable: {exc}", permanent=False, code=Code.UNAVAILABLE) from exc
        return Sent(message.sid or "")

    # MessageStatus values of a status callback that say where the message ended up
    # (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values); the
    # others (queued, sending, sent, accepted, scheduled, canceled) say nothing we record.
    RECEIPT_STATUSES = {"delivered": "delivered", "read": "read", "undelivered": "failed", "failed": "failed"}

    @staticmethod
    def verify(request, config: dict, url: str) -> None:
        """Raise `ReceiptRefused` unless Twilio sent this request for this account. Status
        callbacks and inbound messages are both signed with the account's auth token over the
        URL they were posted to and their form parameters
        (https://www.twilio.com/docs/usage/security#validating-requests)."""
        signature = request.headers.get("X-Twilio-Signature")
        if not signature:
            raise ReceiptRefused("X-Twilio-Signature is missing", status=401)
        if not RequestValidator(config["auth_token"]).validate(url, request.POST, signature):
            raise ReceiptRefused("X-Twilio-Signature does not match")
        if request.POST.get("AccountSid") != config["account_sid"]:
            raise ReceiptRefused("AccountSid is not this provider's account")

    @classmethod
    def read_receipts(cls, request, config: dict, url: str) -> list[Receipt]:
        cls.verify(request, config, url)
        status = cls.RECEIPT_STATUSES.get(request.POST.get("MessageStatus", ""))
        if status is None:
            return []
        error_code = request.POST.get("ErrorCode", "")
        return [
            Receipt(
                provider_message_id=request.POST.get("MessageSid", ""),
                status=status,
                reason=f"twilio_{error_code}" if error_code.isdigit() else "undelivered",
                error=f"Twilio error {error_code}" if error_code.isdigit() else "",
                # 21610: the number replied STOP to this sender; Twilio refuses every send to it
                # until it replies START, which our inbound URL hears too.
                suppress="sms_stop" if error_code == "21610" else "",
                address=request.POST.get("To", ""),
                message_id=request.GET.get("message", ""),
            )
        ]

    # Twilio's default opt-out and opt-in keywords: a reply that is one of them, whole and in
    # any case, opts the number out of (or back into) every message from this sender
    # (https://help.twilio.com/articles/223134027, "Twilio support for opt-out keywords").
    OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
    OPT_IN = frozenset({"START", "YES", "UNSTOP"})

    @classmethod
    def read_inbound(cls, request, config: dict, url: str) -> list[Inbound]:
        # "A message comes in" webhook: From is the person, Body what they wrote. With Advanced
        # Opt-Out on, Twilio names the keyword's kind itself in OptOutType (STOP, START, HELP).
        cls.verify(request, config, url)
        sender = request.POST.get("From", "")
        if not sender:
            return []
        kind = request.POST.get("OptOutType", "").upper()
        word = request.POST.get("Body", "").strip().upper()
        if kind == "STOP" or (not kind and word in cls.OPT_OUT):
            return [Inbound(sender, "out")]
        if kind == "START" or (not kind and word in cls.OPT_IN):
            return [Inbound(sender, "in")]
        return [Inbound(sender)]

    @classmethod
    def classify(cls, exc: TwilioException, headers: dict) -> ProviderError:
        # TwilioRestException (legacy JSON) and TwilioServiceException (RFC 9457) both carry these.
        status = int(getattr(exc, "status", 0) or 0)
        twilio_code = getattr(exc, "code", None)
        text = getattr(exc, "msg", "") or getattr(exc, "detail", "") or getattr(exc, "title", "")
        detail = f"Twilio {status} error {twilio_code}: {text}".strip()
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if twilio_code in cls.PERMANENT_CODES:
            return ProviderError(detail, permanent=True, code=cls.PERMANENT_CODES[twilio_code])
        if twilio_code in cls.TRANSIENT_CODES:
            return ProviderError(
                detail, permanent=False, code=cls.TRANSIENT_CODES[twilio_code], retry_after=retry_after
            )
        if not status:
            return ProviderError(detail, permanent=True, code=Code.BAD_REQUEST)
        return http_status_error(status, detail, retry_after=retry_after)


# --- Development sink -----------------------------------------------------------------------------


class ConsoleSmsProvider(SmsProvider):
    """Appends each message as one JSON line to `<VAR_DIR>/sinks/sms.jsonl`."""

    kind = "console"

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        config = reject_unknown(config, ("from_number",))
        return {"from_number": optional_str(config, "from_number", "+15550000000")}

    def send(self, out: Outgoing) -> Sent:
        provider_id = f"console-sms-{out.message_id}"
        record = {
            "id": provider_id,
            "time": datetime.now(UTC).isoformat(),
            "message_id": out.message_id,
            "from": out.sender or self.config["from_number"],
            "to": out.to,
            "text": self.text(out),
        }
        path = sink_path("sms.jsonl")
        append_json_line(path, record)
        logger.info("sms to %s written to %s", out.to, path)
        return Sent(provider_id)
