"""The contract between the send pipeline and a provider.

A provider turns one rendered `Outgoing` message into one provider call and answers with a
`Sent` or raises a `ProviderError` that says whether trying again could help. The pipeline
decides retries from that classification alone (STYLE habit 3), so every provider answer must
be classified here, in the channel module that understands it, never by a bare `except`.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from django.conf import settings

from alertflow.outbound import AddressNotAllowed, refusal_in

from ..crypto import RedactedConfig, mask_secrets

# Default network timeout, in seconds, for kinds whose config leaves `timeout` out. Several SDKs
# default to no timeout at all (twilio) or to minutes (firebase-admin: 120 s); a worker stuck on
# one provider call holds back its whole queue.
DEFAULT_TIMEOUT = 10.0


class Code:
    """The fixed vocabulary of `ProviderError.code`, whatever the provider's own codes are.

    The pipeline acts on these (suppress an address, deactivate a device, fail over to the next
    provider); the provider's raw code and text stay in the error message for the attempts log.
    """

    # The address's fault: no provider can reach it.
    INVALID_ADDRESS = "invalid_address"  # malformed or non-existent address, number or token
    UNSUBSCRIBED = "unsubscribed"  # the recipient opted out at the provider (SMS STOP): suppressed
    UNREGISTERED = "unregistered"  # the push token is dead: deactivate the device
    REJECTED = "rejected"  # the provider refused this recipient (SMTP 550 at RCPT, a hard bounce)
    # The message's fault: its content would be refused by any provider.
    BAD_REQUEST = "bad_request"  # any other refusal of this request the provider will repeat
    # The provider's fault (or our account's with it): another provider may take the message.
    RATE_LIMITED = "rate_limited"  # slow down: 429, SMTP 452/421, quota exceeded
    UNAVAILABLE = "unavailable"  # 5xx, connection refused/reset, timeouts
    AUTH = "auth"  # our credentials are wrong or revoked (HTTP 401/403, SMTP 535, Twilio 20003)
    ACCOUNT = "account"  # our account is suspended, closed or unpaid (HTTP 402, Twilio 20005)
    CONFIGURATION = "configuration"  # the provider config is wrong: sender not allowed, unknown endpoint
    # A host the provider's config names (SMTP host, api_url, token_uri) is not a public address
    # (alertflow.outbound): a configuration fault, refused before any connection.
    ADDRESS_NOT_ALLOWED = "address_not_allowed"


class Fault:
    """Whose fault a failed send is; the pipeline acts on this alone (DESIGN section 3).

    ADDRESS and CONTENT: another provider would get the same answer, so the message stops there
    and the provider's circuit breaker does not count it. PROVIDER: the next provider is tried
    at once, the breaker counts it, and when no provider could take the message it is retried
    later, never dead-lettered for it.
    """

    ADDRESS = "address"
    CONTENT = "content"
    PROVIDER = "provider"


FAULT_OF_CODE = {
    Code.INVALID_ADDRESS: Fault.ADDRESS,
    Code.UNSUBSCRIBED: Fault.ADDRESS,
    Code.UNREGISTERED: Fault.ADDRESS,
    Code.REJECTED: Fault.ADDRESS,
    Code.BAD_REQUEST: Fault.CONTENT,
    Code.RATE_LIMITED: Fault.PROVIDER,
    Code.UNAVAILABLE: Fault.PROVIDER,
    Code.AUTH: Fault.PROVIDER,
    Code.ACCOUNT: Fault.PROVIDER,
    Code.CONFIGURATION: Fault.PROVIDER,
    Code.ADDRESS_NOT_ALLOWED: Fault.PROVIDER,
}


class ProviderError(Exception):
    """A failed send, classified where the provider's answer is understood.

    `permanent`: True when sending the same message through the same provider again cannot
    succeed (bad address, dead token, refused content, revoked credentials); False when a later
    try may (rate limits, 5xx, network). `code` is one of `Code`, and says whose fault it is
    (`fault`, from `FAULT_OF_CODE`). `retry_after` is the provider's own hint in seconds
    (HTTP `Retry-After`), or None. `deactivate_device` is set only when the push token itself is
    dead, so the pipeline stops using it.

    `message` is stored in the attempts log and returned by the API, so it is cleaned here, the
    one place every provider's text passes: one line, no markup, at most `MAX_ERROR_CHARS`.
    Build it from the provider's status, its own code and its short message
    (`summarize_http_error`), never from a raw response body.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: str = "",
        retry_after: float | None = None,
        deactivate_device: bool = False,
    ) -> None:
        message = clean_text(message)
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code
        self.retry_after = retry_after
        self.deactivate_device = deactivate_device

    @property
    def transient(self) -> bool:
        return not self.permanent

    @property
    def fault(self) -> str:
        """`Fault.ADDRESS`, `Fault.CONTENT` or `Fault.PROVIDER`. An error without a known code
        is blamed on the provider when it may pass and on the message when it will not."""
        return FAULT_OF_CODE.get(self.code, Fault.CONTENT if self.permanent else Fault.PROVIDER)

    def __repr__(self) -> str:
        kind = "permanent" if self.permanent else "transient"
        return f"ProviderError({self.message!r}, {kind}, code={self.code!r}, retry_after={self.retry_after})"


@dataclass(frozen=True)
class Outgoing:
    """One rendered message, ready for one address."""

    message_id: str  # our Message id, for logs and provider metadata/idempotency
    to: str  # a channel's destination: email address | E.164 phone | device token (webpush: the
    # subscription JSON string) | the recipient's id (inapp)
    content: dict  # rendered: the channel's content fields (email {subject, html, text}; sms {text}...)
    platform: str = ""  # push only: fcm | apns | webpush
    sender: str = ""  # optional from override
    # The one-click unsubscribe URL for this message (email: `List-Unsubscribe`), "" for none:
    # a critical category's mail, or a deployment without ALERTFLOW_PUBLIC_URL.
    unsubscribe_url: str = ""


@dataclass(frozen=True)
class Receipt:
    """One provider event about one message it took, in our vocabulary.

    `status` is a `Message.Status` value that delivery/receipts.py accepts; `reason` a short code for the history
    (`twilio_30003`, `hard_bounce`); `error` the provider's short description, if any.
    `suppress` is set when the event says the address must not be contacted again, as the
    `Suppression.Reason` to record (`hard_bounce`, `complaint`, `sms_stop`): only the provider
    kind can tell a hard bounce from a soft one. `address` is the recipient the event names,
    when it names one (else the matched message's address is suppressed). `message_id` is our
    `Message.id` when the provider echoes it back (anymail metadata): it matches a receipt that
    beats the worker's record of `provider_message_id`.
    """

    provider_message_id: str
    status: str
    reason: str = ""
    error: str = ""
    suppress: str = ""
    address: str = ""
    message_id: str = ""


@dataclass(frozen=True)
class Inbound:
    """What a provider says a person told us by replying: `opt` is "out" (they want nothing more
    on this channel: SMS STOP), "in" (they take it back: START) or "" (anything else)."""

    address: str
    opt: str = ""


class ReceiptRefused(Exception):
    """A receipt request that is not proven to come from the provider account: nothing is read.

    `status` is 401 when it carried no credentials or signature at all, 403 when they are wrong
    (or the provider account has no webhook secret configured, so nothing could prove it), 400
    when it is authentic but unreadable.
    """

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Sent:
    provider_message_id: str


class Provider:
    """One provider kind of one channel. Subclass it, then add one line to the registry.

    An instance holds one validated config and is used by one worker thread for a batch:

        with provider_class("email", "smtp")(config) as provider:
            for out in batch:
                provider.send(out)

    `send()` works without `with` too (one connection per call).
    """

    channel: ClassVar[str]  # a channel of alertflow/channels.py that `needs_provider`
    kind: ClassVar[str]  # registry key within the channel, e.g. "smtp", "twilio", "console"
    secret_fields: ClassVar[tuple[str, ...]] = ()  # config keys encrypted at rest, never returned by the API
    platforms: ClassVar[tuple[str, ...]] = ()  # push only: the device platforms this kind serves
    # What a refusal of the outbound guard is: the config named the host (a provider configuration
    # fault, the next provider may take the message), unless the kind sends to hosts the
    # destination names (Web Push endpoints: the address's fault).
    refused_destination_code: ClassVar[str] = Code.ADDRESS_NOT_ALLOWED
    # Whether an open instance is worth keeping for the next batch of the same worker process
    # (delivery.sending.KeptProviders): kinds whose connection costs round trips to set up.
    keep_between_batches: ClassVar[bool] = False

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        """Check a config dict as a tenant or the environment gave it.

        Takes the raw dict (secrets in clear). Returns a normalised copy (types coerced, optional
        keys filled with their defaults) that `__init__` accepts. Raises `ValueError` with the
        message `"<field>: <problem>"` for the first bad field, unknown keys included. Does no
        network I/O: a config can be valid and its credentials still wrong.
        """
        return reject_unknown(config, ())

    @classmethod
    def destinations(cls, config: dict) -> list[tuple[str, str, int]]:
        """The hosts a validated config makes us connect to, as `[(field, host, port)]`.

        A tenant's config is checked against the outbound guard at save with these; at send the
        connections themselves go through it. Hosts that come from settings (the deployment's
        Twilio or FCM endpoint) or from the message (a Web Push endpoint) are not listed here.
        """
        return []

    def __init__(self, config: dict, *, guarded: bool = True, receipt_url: str = "") -> None:
        """Takes a config (validated again here, so a stored config that no longer passes fails loudly).

        `guarded`: the config is a tenant's, so every connection it names goes through the
        outbound guard (alertflow.outbound). False only for the deployment's own providers from
        settings, whose hosts (a relay on the private network) are the operator's choice.
        `receipt_url`: where the provider should post its receipts for what this instance sends
        ("" for none); kinds whose API takes it per message (Twilio) send it along.
        """
        self.config = RedactedConfig(self.validate_config(config), self.secret_fields)
        self.guarded = guarded
        self.receipt_url = receipt_url

    @classmethod
    def read_receipts(cls, request, config: dict, url: str) -> list[Receipt]:
        """Verify a receipt request (a Django `HttpRequest` posted to `url`, the public receipt
        URL of the provider row whose complete config is `config`) and return its receipts.

        Raises `ReceiptRefused` when the request is not proven to come from the provider
        account. A kind that posts no receipts refuses everything (this default).
        """
        raise ReceiptRefused(f"{cls.channel}/{cls.kind} posts no receipts")

    @classmethod
    def read_inbound(cls, request, config: dict, url: str) -> list[Inbound]:
        """Verify an inbound message request (a person's reply, posted to `url`, the public
        inbound URL of the provider row whose complete config is `config`) and return what it
        says. Raises `ReceiptRefused` like `read_receipts`; a kind that takes no inbound
        messages refuses everything (this default)."""
        raise ReceiptRefused(f"{cls.channel}/{cls.kind} takes no inbound messages")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.channel}/{self.kind}>"

    def failure(self, exc: ProviderError | AddressNotAllowed) -> ProviderError:
        """What `send()` raised, as the error to record and return to the tenant.

        A refusal of the outbound guard, however a library wrapped it, is permanent: no retry
        through this provider can reach the host (`refused_destination_code` says whose fault it
        is). The config's secrets are masked in the text: a provider may quote a credential back.
        """
        refused = refusal_in(exc)
        if refused is None:
            error = exc
        else:
            error = ProviderError(str(refused), permanent=True, code=self.refused_destination_code)
        assert isinstance(error, ProviderError), error
        masked = mask_secrets(error.message, self.config)
        if masked != error.message:
            error.message, error.args = masked, (masked,)
        return error

    def open(self) -> None:
        """Prepare to send a batch over one connection (an SMTP session, an HTTP pool).

        Does no network I/O and raises nothing for provider answers: connections are made on
        the first `send()`, so each failure is classified against the message it concerns.
        """

    def close(self) -> None:
        """Release what `open()` or `send()` acquired. Never raises for provider answers."""

    def check(self) -> None:
        """Before an instance kept since an earlier batch sends again: drop a connection the
        other side closed meanwhile, so the next `send()` makes a new one. Sends nothing and
        raises nothing."""

    def send(self, out: Outgoing) -> Sent:
        """Send one message to one address.

        Takes an `Outgoing` of this provider's channel. Returns `Sent` with the provider's
        message id (what its webhooks will name). Raises `ProviderError` for every failure the
        provider or the network reports, classified permanent or transient; any other exception
        is a bug in AlertFlow, not a provider answer.
        """
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BuiltinDelivery:
    """How a channel that needs no provider (`needs_provider = False` in alertflow/channels.py)
    is delivered: by AlertFlow itself, with no tenant configuration, failover or breaker.

    Subclass it in `delivery/channels/<channel>.py` and add it to the registry; the pipeline
    looks it up by `channel`. It holds no per-tenant state: one instance serves every message.
    """

    channel: ClassVar[str]  # the channel it delivers, e.g. "inapp"
    name: ClassVar[str]  # what `Message.provider` records, e.g. "inbox"

    def send(self, out: Outgoing) -> Sent:
        """Deliver one rendered message (the `Message` row is already stored with it).

        Takes an `Outgoing` whose `to` is one of the channel's destinations. Returns `Sent`.
        Raises `ProviderError` when delivery failed, classified permanent or transient like a
        provider's.
        """
        raise NotImplementedError

    def recorded(self, messages: list) -> None:
        """Called inside the transaction that records `messages` (this channel's `Message`s,
        just settled `sent`, with `rendered`, `recipient` and `notification` loaded), so what the
        delivery stores commits or rolls back with their status. Anything to tell the outside
        world goes in `transaction.on_commit`. Does nothing by default.
        """


# --- Error text: what the attempts log stores and the API returns ------------------------------

MAX_ERROR_CHARS = 300
_TAG = re.compile(r"<[^>]{0,200}>")
_CONTROL_AND_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]+")


def clean_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """One line of plain text: markup tags dropped, control characters and runs of whitespace
    made one space, cut to `limit` characters. Provider answers end up in our API responses
    and logs; neither should carry another service's page or forged log lines."""
    text = _CONTROL_AND_SPACE.sub(" ", _TAG.sub(" ", str(text))).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Where JSON error bodies keep their code and message, in the shapes the providers use:
# SendGrid {"errors": [{"message"}]}, Mailgun {"message"}, Postmark {"ErrorCode", "Message"},
# Google {"error": {"code", "status", "message"}}, APNs {"reason"}, Mozilla autopush {"errno", "message"},
# Amazon SES (botocore's error) {"Code", "Message"}.
_CODE_KEYS = ("code", "Code", "ErrorCode", "error_code", "errno", "status", "reason")
_MESSAGE_KEYS = ("message", "Message", "detail", "error_description", "title", "error", "reason")


def error_fields(body: Any) -> tuple[str, str]:
    """The provider's own `(code, message)` from a decoded JSON error body; `""` for what is absent."""
    if isinstance(body, dict):
        for nested in (
            body.get("error"),
            (body.get("errors") or [None])[0] if isinstance(body.get("errors"), list) else None,
        ):
            if isinstance(nested, dict):
                return error_fields(nested)
        code = next((str(body[k]) for k in _CODE_KEYS if isinstance(body.get(k), str | int) and body[k] != ""), "")
        message = next((body[k] for k in _MESSAGE_KEYS if isinstance(body.get(k), str) and body[k]), "")
        return code, message
    return "", ""


def summarize_http_error(service: str, status: int, body: Any = None) -> str:
    """`"<service> <status> [<code>]: <message>"` for an HTTP error answer.

    `body` is the decoded JSON body, if the answer had one; any other body (an HTML error page,
    a service that is not the provider's) is left out entirely.
    """
    code, message = error_fields(body)
    text = f"{service} {status}"
    if code and code != str(status):
        text += f" {clean_text(code, 40)}"
    if message:
        text += f": {clean_text(message, 200)}"
    return text


def json_body(response: Any) -> Any:
    """A requests/httpx response's JSON body, or None when it has none."""
    try:
        return response.json()
    except (ValueError, AttributeError, TypeError):
        return None


# --- Config helpers: each raises ValueError("<field>: <problem>") -------------------------------


def reject_unknown(config: Any, allowed: tuple[str, ...] | set[str]) -> dict:
    if not isinstance(config, dict):
        raise ValueError("config: must be an object")
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown setting (expected one of {', '.join(sorted(allowed)) or 'none'})")
    return dict(config)


def require_str(config: dict, field: str) -> str:
    value = optional_str(config, field)
    if not value:
        raise ValueError(f"{field}: required")
    return value


def optional_str(config: dict, field: str, default: str = "") -> str:
    value = config.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a string")
    return value.strip()


def optional_bool(config: dict, field: str, default: bool) -> bool:
    value = config.get(field, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
        return value.lower() in {"true", "1", "yes", "on"}
    raise ValueError(f"{field}: must be true or false")


def optional_int(config: dict, field: str, default: int, *, low: int, high: int) -> int:
    value = config.get(field, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: must be an integer") from None
    if isinstance(value, bool) or str(number) != str(value).strip() or not low <= number <= high:
        raise ValueError(f"{field}: must be an integer from {low} to {high}")
    return number


def optional_timeout(config: dict, field: str = "timeout", default: float = DEFAULT_TIMEOUT) -> float:
    value = config.get(field, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: must be a number of seconds") from None
    if isinstance(value, bool) or not math.isfinite(seconds) or not 0 < seconds <= 300:
        raise ValueError(f"{field}: must be between 0 and 300 seconds")
    return seconds


def optional_url(config: dict, field: str) -> str:
    """An http(s) base URL without its trailing slash, or "" for the provider's own."""
    value = optional_str(config, field)
    if value and not value.startswith(("https://", "http://")):
        raise ValueError(f"{field}: must be an http(s) URL")
    return value.rstrip("/")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP `Retry-After` header: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def http_status_error(status: int, detail: str, *, retry_after: float | None = None, code: str = "") -> ProviderError:
    """The common reading of an HTTP status: 408/429/5xx may pass, any other 4xx will not.

    401/403 (credentials), 402 (account) and 404/405 (an endpoint that is not there: a wrong
    API URL or account id) are the provider's fault; any other 4xx is the request's.
    """
    if status == 429:
        return ProviderError(detail, permanent=False, code=code or Code.RATE_LIMITED, retry_after=retry_after)
    if status == 408 or status >= 500:
        return ProviderError(detail, permanent=False, code=code or Code.UNAVAILABLE, retry_after=retry_after)
    if status in (401, 403):
        return ProviderError(detail, permanent=True, code=code or Code.AUTH)
    if status == 402:
        return ProviderError(detail, permanent=True, code=code or Code.ACCOUNT)
    if status in (404, 405):
        return ProviderError(detail, permanent=True, code=code or Code.CONFIGURATION)
    return ProviderError(detail, permanent=True, code=code or Code.BAD_REQUEST)


# --- Console sinks: local files a person can open (`make run` without providers) ----------------


def sink_path(*parts: str) -> Path:
    """`<VAR_DIR>/sinks/<parts>`, with its directory created. Read at call time so tests can move VAR_DIR."""
    path = Path(settings.VAR_DIR, "sinks", *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def append_json_line(path: Path, record: dict) -> None:
    # One write() of one line on an O_APPEND file: lines from several worker processes do not interleave.
    line = json.dumps(record, ensure_ascii=False, sort_keys=True, default=str) + "\n"
    with path.open("a", encoding="utf-8") as sink:
        sink.write(line)


def file_safe(text: str) -> str:
    """`text` reduced to characters safe in a file name (message ids come from our database, but still)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] or "message"
