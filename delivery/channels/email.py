"""Email providers: SMTP, the ESPs through django-anymail, and a file sink for development.

Every kind builds the same Django `EmailMultiAlternatives` (text body, HTML alternative) and
hands it to a Django email backend: SMTP through Django's own, ESPs through anymail's. What
differs per kind is the backend, its arguments and how its failures read.
"""

from __future__ import annotations

import functools
import logging
import re
import smtplib
import ssl
from contextlib import suppress
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.mime.base import MIMEBase
from email.policy import Compat32
from email.utils import make_msgid, parseaddr
from io import BytesIO
from typing import Any, ClassVar

from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
    AnymailUnsupportedFeature,
    AnymailWebhookValidationFailure,
)
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.core.mail.message import sanitize_address
from django.core.validators import validate_email
from django.utils.encoding import punycode
from django.utils.module_loading import import_string

from alertflow import outbound

from .. import tracking
from .base import (
    Code,
    Outgoing,
    Provider,
    ProviderError,
    Receipt,
    ReceiptRefused,
    Sent,
    clean_text,
    file_safe,
    http_status_error,
    json_body,
    optional_bool,
    optional_int,
    optional_str,
    optional_timeout,
    optional_url,
    parse_retry_after,
    reject_unknown,
    require_str,
    sink_path,
    summarize_http_error,
)

logger = logging.getLogger(__name__)

HEADER_MESSAGE_ID = "X-AlertFlow-Message-Id"
# A sender, display name included: more than any real one (an address is at most 254), and a
# bound on what Python's address parsers do with it at every send: they recurse on nested
# comments (RecursionError, a 500, from about 500 parentheses) and take quadratic time on a run
# of quotes (1.4 s for 20,000).
FROM_EMAIL_MAX_LENGTH = 320
# The line breaks of str.splitlines that Django's header check (\r, \n) lets through and that stay
# raw in an ASCII header: Python's email package starts a new header line at each, so a subject
# "Code 123<VT>is yours" ended the header block after "Code 123" (From, To... became the body).
# Non-ASCII ones (U+0085, U+2028, U+2029) are harmless: such a header is written encoded.
HEADER_LINE_BREAK = re.compile("[\x0b\x0c\x1c\x1d\x1e]")


def _detail(exc: BaseException) -> str:
    """An exception's type and own words. Not `str(exc)`: anymail's appends the ESP's whole
    response body, which is not ours to store or hand to a tenant."""
    return f"{type(exc).__name__}: {' '.join(str(arg) for arg in exc.args)}"


class EmailProvider(Provider):
    """What every email kind shares: a sender address and the message built from `Outgoing`."""

    channel = "email"
    # Config keys every email kind accepts, on top of its own.
    common_fields: ClassVar[tuple[str, ...]] = ("from_email", "timeout")

    @classmethod
    def validate_from(cls, config: dict) -> str:
        from_email = require_str(config, "from_email")
        if len(from_email) > FROM_EMAIL_MAX_LENGTH:
            raise ValueError(f"from_email: at most {FROM_EMAIL_MAX_LENGTH} characters")
        _name, address = parseaddr(from_email)
        try:
            validate_email(address)
        except ValidationError:
            raise ValueError("from_email: not an email address") from None
        if not _writable(from_email):
            # parseaddr reads the first of "a@x.com, b@x.com" and stops: every send then failed.
            raise ValueError("from_email: not an email address")
        return from_email

    def build_message(self, out: Outgoing) -> EmailMultiAlternatives:
        """The message for `out`, with a Message-ID we chose (so it can be our provider id).

        Raises a permanent `ProviderError` for an address or header no provider would accept.
        """
        return self.build_mime(out)[0]

    def build_mime(self, out: Outgoing) -> tuple[EmailMultiAlternatives, MIMEBase]:
        """`build_message`, with the MIME form its header checks built: SMTP sends that very
        object (building it again in Django's backend was a tenth of the worker's CPU per bulk
        email, bench.e2e with py-spy)."""
        try:
            validate_email(out.to)
            # The validator takes control characters in a quoted local part ("ada<VT>x"@...), and
            # a line break there broke the To header (HEADER_LINE_BREAK).
            if HEADER_LINE_BREAK.search(out.to):
                raise ValidationError("a line break in the address")
        except ValidationError:
            raise ProviderError(
                f"not an email address: {out.to!r}", permanent=True, code=Code.INVALID_ADDRESS
            ) from None
        from_email = out.sender or self.config["from_email"]
        domain = _message_id_domain(from_email)
        subject = str(self.content(out, "subject"))
        if HEADER_LINE_BREAK.search(subject):
            raise ProviderError("bad header: a line break in the subject", permanent=True, code=Code.BAD_REQUEST)
        text, html = str(self.content(out, "text")), str(self.content(out, "html"))
        # An explicit domain: Django's default asks the resolver for this host's FQDN.
        headers = {"Message-ID": make_msgid(domain=domain), HEADER_MESSAGE_ID: out.message_id}
        if out.unsubscribe_url:
            # RFC 2369 names the URL; RFC 8058's second header says a POST to it unsubscribes
            # with no further step, which is what Gmail's and Yahoo's unsubscribe button sends
            # (both require it of bulk senders). https only: no mailbox reads mailto unsubscribes.
            headers["List-Unsubscribe"] = f"<{out.unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message = EmailMultiAlternatives(
            subject=subject, body=text or html, from_email=from_email, to=[out.to], headers=headers
        )
        if text and html:
            message.attach_alternative(html, "text/html")
        elif html:
            message.content_subtype = "html"
        try:
            mime = message.message()  # header checks happen here; fail before any provider sees it
        except ValueError as exc:  # BadHeaderError, or what Django's mail code cannot write
            if not _writable(out.to):
                # Django's validator takes it, but no header can carry it (a domain whose IDNA
                # form is longer than a DNS label may be): the address's fault, not a bug.
                raise ProviderError(
                    f"not an email address: {out.to!r}", permanent=True, code=Code.INVALID_ADDRESS
                ) from exc
            raise ProviderError(f"bad header: {exc}", permanent=True, code=Code.BAD_REQUEST) from exc
        return message, mime

    @staticmethod
    def content(out: Outgoing, key: str) -> Any:
        return out.content.get(key) or ""


@functools.lru_cache(maxsize=256)
def _message_id_domain(from_email: str) -> str:
    """The domain of the Message-IDs of a sender: its address's, in its ASCII form. A msg-id is
    ASCII (RFC 5322 3.6.4): with an IDN domain, Django wrote the whole Message-ID header as an
    RFC 2047 encoded word, which no mail system reads as the id we keep as the provider's. The
    same few senders for every message, parsed once each (`parseaddr` was a tenth of building
    a message)."""
    domain = parseaddr(from_email)[1].rpartition("@")[2]
    try:
        return punycode(domain) if domain else "alertflow.invalid"
    except UnicodeError:  # no IDNA form (a label too long): not an address, but still an id
        return "alertflow.invalid"


# --- SMTP -----------------------------------------------------------------------------------------


class SmtpProvider(EmailProvider):
    """Any SMTP server, with Django's SMTP backend: one connection carries a whole batch."""

    kind = "smtp"
    secret_fields = ("password",)
    # A single send would otherwise pay connect, EHLO (and STARTTLS, AUTH) and QUIT every time.
    keep_between_batches = True

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        config = reject_unknown(
            config, ("host", "port", "username", "password", "use_tls", "use_ssl", *cls.common_fields)
        )
        use_tls = optional_bool(config, "use_tls", False)
        use_ssl = optional_bool(config, "use_ssl", False)
        if use_tls and use_ssl:
            # STARTTLS upgrades a plain connection (port 587); SSL is TLS from the first byte (465).
            raise ValueError("use_ssl: use_tls (STARTTLS) and use_ssl (implicit TLS) are mutually exclusive")
        username, password = optional_str(config, "username"), config.get("password") or ""
        if not isinstance(password, str):
            raise ValueError("password: must be a string")
        if bool(username) != bool(password):
            raise ValueError("password: username and password go together")
        return {
            "host": require_str(config, "host"),
            "port": optional_int(config, "port", 465 if use_ssl else 587 if use_tls else 25, low=1, high=65535),
            "username": username,
            "password": password,
            "use_tls": use_tls,
            "use_ssl": use_ssl,
            "timeout": optional_timeout(config),
            "from_email": cls.validate_from(config),
        }

    @classmethod
    def destinations(cls, config: dict) -> list[tuple[str, str, int]]:
        return [("host", config["host"], config["port"])]

    def __init__(self, config: dict, **kwargs) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        self._backend = (GuardedSmtpBackend if self.guarded else SmtpBackend)(
            host=c["host"],
            port=c["port"],
            username=c["username"],
            password=c["password"],
            use_tls=c["use_tls"],
            use_ssl=c["use_ssl"],
            timeout=c["timeout"],
            fail_silently=False,
        )
        self._batch = False

    def open(self) -> None:
        # The connection itself opens on the first send, so a refused connection is that message's failure.
        self._batch = True

    def close(self) -> None:
        self._batch = False
        self._drop_connection()

    def check(self) -> None:
        # NOOP: no message is in flight, so a session found dead here cannot have sent one.
        connection = self._backend.connection
        if connection is None:
            return
        try:
            code, _text = connection.noop()
        except (smtplib.SMTPException, OSError):
            code = None
        if code != 250:
            self._drop_connection()

    def send(self, out: Outgoing) -> Sent:
        # What Django's `send_messages` does for one message (sanitized envelope addresses,
        # `sendmail` of the CRLF bytes), but with the MIME built once, in `build_mime`, the
        # sender's envelope address parsed once per address and a plain recipient not parsed.
        message, mime = self.build_mime(out)
        encoding = message.encoding or settings.DEFAULT_CHARSET
        sender = _envelope_address(message.from_email, encoding)
        recipients = [envelope_recipient(address, encoding) for address in message.recipients()]
        data = smtp_bytes(mime)
        try:
            # Connected already: a no-op. Otherwise (the first message, or after a dropped
            # connection) it connects: a batch keeps that connection, a lone send closes it.
            opened = self._backend.open()
            try:
                self._backend.connection.sendmail(sender, recipients, data)
            finally:
                if opened and not self._batch:
                    self._backend.close()
        except (smtplib.SMTPException, OSError) as exc:
            if not _session_survives(exc):
                self._drop_connection()
            raise classify_smtp(exc) from exc
        return Sent(message.extra_headers["Message-ID"])

    def _drop_connection(self) -> None:
        # quit() on a dead socket raises; the connection is gone either way.
        with suppress(smtplib.SMTPException, OSError):
            self._backend.close()
        self._backend.connection = None


def _writable(address: str) -> bool:
    """Whether Django's mail code can write `address` in a header and the SMTP envelope."""
    if HEADER_LINE_BREAK.search(address):
        return False
    try:
        sanitize_address(address, settings.DEFAULT_CHARSET)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=256)
def _envelope_address(address: str, encoding: str) -> str:
    """The SMTP envelope form of a sender address (`MAIL FROM`): the same few senders for every
    message, and parsing one takes as long as sending the message's bytes."""
    return sanitize_address(address, encoding)


# An address Django's `sanitize_address` gives back unchanged: a dot-atom local part of ASCII
# `atext` (RFC 5322 3.2.3, so `Address.addr_spec` quotes nothing) at a domain of ASCII labels of
# 1 to 63 characters (which the `idna` codec returns as they are), no display name, no
# whitespace. `=` is left out: the parser decodes an atom that starts `=?` as an RFC 2047
# encoded word. Anything else (IDN, a non-ASCII or quoted local part, a name) takes the full parse.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*"
)


def envelope_recipient(address: str, encoding: str) -> str:
    """The SMTP envelope form of a recipient (`RCPT TO`), as `sanitize_address` makes it: a
    plain address is its own form, and parsing it with the email package's header parser was a
    fifth of an SMTP send's CPU (bench.e2e bulk, py-spy)."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return address
    return sanitize_address(address, encoding)


def smtp_bytes(mime: MIMEBase) -> bytes:
    """`mime.as_bytes(linesep="\\r\\n")` (what Django's SMTP backend sends), the same bytes for
    less CPU: each distinct header is folded once per process, and a multipart boundary is
    checked against the parts without compiling a regular expression for it."""
    out = BytesIO()
    _SmtpGenerator(out, mangle_from_=False, policy=_SMTP_POLICY).flatten(mime)
    return out.getvalue()


class _FoldOnce(Compat32):
    """compat32, the policy of Django's MIME classes, remembering how it folded a header.

    Folding runs the `email.header.Header` algorithm on every header of every message, half of
    turning a message into bytes (cProfile); most headers (Content-Type, MIME-Version, From, Date within
    a second, a bulk's Subject) are the same from one message to the next. Every input of the
    fold is in the key, so a remembered fold is the fold.

    A header that fits on its line and is printable ASCII (To, Message-ID, the message id header:
    a new value in every message, 5-6 us each to fold) is written as it is, which is what the
    algorithm gives back for such a line (tests/delivery/test_email.py compares the two over
    generated values): those no longer push the shared headers' folds out of the cache.
    """

    def fold_binary(self, name, value):
        if not isinstance(value, str):  # a Header object: not hashable, and rare
            return super().fold_binary(name, value)
        if (
            self.max_line_length
            and len(name) + 2 + len(value) <= self.max_line_length
            and value.isascii()
            and value.isprintable()
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return _folded(self.linesep, self.max_line_length, self.cte_type, name, value)


@functools.lru_cache(maxsize=1024)
def _folded(linesep: str, max_line_length: int | None, cte_type: str, name: str, value: str) -> bytes:
    return Compat32(linesep=linesep, max_line_length=max_line_length, cte_type=cte_type).fold_binary(name, value)


_SMTP_POLICY = _FoldOnce(linesep="\r\n")


class _SmtpGenerator(BytesGenerator):
    """The email package's generator, with a boundary test that compiles nothing.

    The stdlib makes a random boundary and compiles a regular expression to look for it as a
    line of the parts' text: a new pattern for every multipart message, which missed `re`'s
    cache every time (a seventh of an SMTP send of a text and HTML email). With CRLF line ends
    that pattern (`^--boundary(--)?$`, where `$` stops before a `\\n`, not a `\\r\\n`) never
    found a boundary line inside a part either. Looking for `--boundary` anywhere in the parts'
    bytes is stricter, and as cheap as a `bytes.find`.
    """

    @classmethod
    def _make_boundary(cls, text=None):
        boundary = super()._make_boundary()  # random, not checked against any text
        candidate, counter = boundary, 0
        while text is not None and b"--" + candidate.encode("ascii") in text:
            candidate, counter = f"{boundary}.{counter}", counter + 1
        return candidate


class GuardedSmtpBackend(SmtpBackend):
    """Django's SMTP backend, connecting through the outbound guard (alertflow.outbound)."""

    @property
    def connection_class(self):
        return outbound.GuardedSMTPSSL if self.use_ssl else outbound.GuardedSMTP


def _session_survives(exc: BaseException) -> bool:
    """Whether the SMTP session is still usable for the next message of the batch.

    A refusal of this message's sender, recipient or data leaves the session reset and usable
    (smtplib sends RSET). Anything else is a broken session, and so is a 421 reply, which the
    server sends when it is closing the channel (RFC 5321 3.8): the next message reconnects.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code != 421 for code, _text in exc.recipients.values())
    if isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)):
        return exc.smtp_code != 421
    return False


def classify_smtp(exc: BaseException) -> ProviderError:
    """Reply codes decide where the server answered (RFC 5321 4.2.1: 4yz transient, 5yz
    permanent), and the command that was refused says whose fault it is."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # One recipient per message here: its (code, text) is the answer.
        code, text = next(iter(exc.recipients.values()), (550, b"recipient refused"))
        return _smtp_reply(code, text, stage="rcpt")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _smtp_reply(exc.smtp_code, exc.smtp_error, stage="auth")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _smtp_reply(exc.smtp_code, exc.smtp_error, stage="mail")
    if isinstance(exc, smtplib.SMTPDataError):
        return _smtp_reply(exc.smtp_code, exc.smtp_error, stage="data")
    if isinstance(exc, smtplib.SMTPResponseException):
        # SMTPConnectError, SMTPHeloError: the server refused us before any message.
        return _smtp_reply(exc.smtp_code, exc.smtp_error, stage="session")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # The server lacks STARTTLS or AUTH that the config asks for: fix the config, not the message.
        return ProviderError(_detail(exc), permanent=True, code=Code.CONFIGURATION)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProviderError(_detail(exc), permanent=True, code=Code.CONFIGURATION)
    # SMTPServerDisconnected, timeouts, refused or reset connections, DNS failures: the network.
    return ProviderError(_detail(exc), permanent=False, code=Code.UNAVAILABLE)


def _smtp_reply(code: int, text: bytes | str, *, stage: str) -> ProviderError:
    """One SMTP reply, read with the command it answered: `auth`, `mail` (MAIL FROM), `rcpt`,
    `data` or `session` (connect, HELO)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    detail = f"SMTP {code} {text}"
    if 400 <= code < 500:
        # 421 closing, 450/451 try later (greylisting), 452 too many recipients / storage, 454 auth unavailable.
        return ProviderError(detail, permanent=False, code=Code.RATE_LIMITED if code == 452 else Code.UNAVAILABLE)
    if stage == "auth" or code in (530, 534, 535):
        # 535 5.7.8 credentials invalid, 530 authentication required (RFC 4954 6): a revoked or wrong login.
        return ProviderError(detail, permanent=True, code=Code.AUTH)
    if stage in ("mail", "session") and code >= 500:
        # Our sender address is not allowed here, or the server does not serve us at all.
        return ProviderError(detail, permanent=True, code=Code.CONFIGURATION)
    if stage == "rcpt" and "relay" in text.lower():
        # "554 5.7.1 Relay access denied": this server does not relay for us, whoever the recipient.
        return ProviderError(detail, permanent=True, code=Code.CONFIGURATION)
    if code in (501, 553):
        # Syntax error in the address / mailbox name not allowed.
        return ProviderError(detail, permanent=True, code=Code.INVALID_ADDRESS)
    if stage == "data" and code >= 500 and not text.lstrip().startswith("5.1."):
        # Refused after the content was seen (5.7.1 spam, 5.6.x media, 5.3.4 too big). Some
        # servers refuse an unknown mailbox only here, with its 5.1.x address status (RFC 3463).
        return ProviderError(detail, permanent=True, code=Code.BAD_REQUEST)
    if code >= 500:
        return ProviderError(detail, permanent=True, code=Code.REJECTED)
    # A 2yz/3yz where an error was expected: smtplib's view of a confused server. Do not resend blindly.
    return ProviderError(detail, permanent=True, code=Code.BAD_REQUEST)


# --- ESPs through django-anymail ------------------------------------------------------------------


class AnymailProvider(EmailProvider):
    """An ESP's HTTP API through its django-anymail backend.

    A subclass names the backend (`backend`) and maps its config to the backend's keyword
    arguments (`backend_kwargs`); errors read the same for every requests-based ESP. Receipts
    come through anymail's tracking webhook view for the ESP (`tracking_view`), authenticated
    with the provider row's own `webhook_secret` (HTTP basic auth, `user:password`) and any
    signing key the ESP has (`webhook_fields`).
    """

    backend: ClassVar[str]
    tracking_view: ClassVar[str]
    own_fields: ClassVar[tuple[str, ...]] = ()
    # Optional secrets (also listed in `secret_fields`, so they are stored encrypted): without
    # them the provider's receipts are refused, never taken unauthenticated.
    webhook_fields: ClassVar[tuple[str, ...]] = ("webhook_secret",)

    # anymail's normalized event types (anymail.signals.EventType) that we record.
    RECEIPT_STATUSES = {
        "delivered": ("delivered", ""),
        "bounced": ("bounced", "hard_bounce"),
        "complained": ("complained", "complaint"),
        "rejected": ("failed", "esp_rejected"),
        "failed": ("failed", "esp_failed"),
    }

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        config = reject_unknown(config, (*cls.secret_fields, *cls.own_fields, "api_url", *cls.common_fields))
        webhook_secret = optional_str(config, "webhook_secret")
        if webhook_secret and ":" not in webhook_secret:
            raise ValueError("webhook_secret: must be user:password (the basic auth of the receipt URL)")
        return {
            **{field: require_str(config, field) for field in cls.secret_fields if field not in cls.webhook_fields},
            **{field: optional_str(config, field) for field in cls.webhook_fields},
            **cls.validate_own(config),
            "api_url": optional_url(config, "api_url"),
            "timeout": optional_timeout(config),
            "from_email": cls.validate_from(config),
        }

    @classmethod
    def destinations(cls, config: dict) -> list[tuple[str, str, int]]:
        if not config["api_url"]:
            return []  # the ESP's own
        return [("api_url", *outbound.url_host_port(config["api_url"]))]

    @classmethod
    def validate_own(cls, config: dict) -> dict:
        """The kind's non-secret fields, normalised (secrets are required strings, checked above)."""
        return {}

    def backend_kwargs(self) -> dict:
        """Keyword arguments for the anymail backend, from `self.config`."""
        raise NotImplementedError

    @classmethod
    def tracking_view_kwargs(cls, config: dict) -> dict:
        """Keyword arguments for the anymail tracking view: its auth, from the provider's
        config (anymail reads kwargs before settings, so no deployment secret ever applies)."""
        return {"webhook_secret": config["webhook_secret"]}

    @classmethod
    def read_receipts(cls, request, config: dict, url: str) -> list[Receipt]:
        if not all(config.get(field) for field in cls.webhook_fields):
            raise ReceiptRefused(f"receipts need {' and '.join(cls.webhook_fields)} in the provider's config")
        if "HTTP_AUTHORIZATION" not in request.META:
            raise ReceiptRefused("basic auth is missing", status=401)
        view = import_string(cls.tracking_view)(**cls.tracking_view_kwargs(config))
        view.setup(request)
        with tracking.collecting() as events:
            try:
                view.dispatch(request)
            except AnymailWebhookValidationFailure as exc:
                raise ReceiptRefused(f"{cls.kind} webhook refused: {exc}") from None
            except (AnymailError, ValueError, KeyError, TypeError, AttributeError) as exc:
                # Authenticated but unreadable (anymail parses the ESP's payload as it comes).
                raise ReceiptRefused(f"{cls.kind} webhook payload unreadable: {_detail(exc)}", status=400) from None
        receipts = []
        for event in events:
            status, reason = cls.RECEIPT_STATUSES.get(event.event_type, (None, ""))
            if status and event.message_id:
                error = clean_text(event.description or event.mta_response or "")
                if status == "bounced" and not cls.hard_bounce(event):
                    reason = "soft_bounce"
                # A hard bounce or a spam complaint: the ESP itself stops mailing the address,
                # and goes on counting sends to it against the account's reputation.
                suppress = reason if reason in ("hard_bounce", "complaint") else ""
                address = event.recipient if isinstance(event.recipient, str) else ""
                ours = (event.metadata or {}).get("alertflow_message_id") if isinstance(event.metadata, dict) else ""
                receipts.append(
                    Receipt(str(event.message_id), status, reason, error, suppress, address, str(ours or ""))
                )
        return receipts

    @classmethod
    def hard_bounce(cls, event) -> bool:
        """Whether a `bounced` event (anymail's normalised type) is permanent. anymail counts
        some temporary failures as bounces too; a kind whose ESP says which it was overrides
        this. The default: anymail already sent the ESP's soft bounces as `deferred`."""
        return True

    def __init__(self, config: dict, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._connection: BaseEmailBackend | None = None

    def open(self) -> None:
        # anymail's open() makes a requests.Session (or a boto3 client): no network yet.
        self._connection = self._make_connection()
        self._connection.open()
        if self.guarded:
            self.guard(self._connection)

    def guard(self, connection: BaseEmailBackend) -> None:
        """Route the opened backend's connections through the outbound guard."""
        outbound.guard_session(connection.session)

    def close(self) -> None:
        if self._connection is not None:
            with suppress(AnymailError, OSError):
                self._connection.close()
            self._connection = None

    def _make_connection(self) -> BaseEmailBackend:
        # Passing every option as a kwarg: anymail reads kwargs before settings.ANYMAIL, so one
        # tenant's credentials never come from the deployment's settings.
        return get_connection(self.backend, fail_silently=False, **self.backend_kwargs())

    def send(self, out: Outgoing) -> Sent:
        message = self.build_message(out)
        # anymail's portable metadata reaches the ESP's webhooks, which name our message back.
        message.metadata = {"alertflow_message_id": out.message_id}
        if self._connection is None:
            with self:  # opened here, so that its connections are guarded too
                return self.send(out)
        try:
            self._connection.send_messages([message])
        except AnymailError as exc:
            raise self.classify(exc) from exc
        return Sent(message.anymail_status.message_id or "")

    def classify(self, exc: AnymailError) -> ProviderError:
        """Map an anymail error to a ProviderError; ESPs that are not requests-based override it."""
        if isinstance(exc, AnymailRecipientsRefused):
            # The ESP accepted the call but refused every recipient (Postmark's inactive recipient,
            # SendGrid's suppression): anymail's recipient status says so.
            return ProviderError(_detail(exc), permanent=True, code=Code.REJECTED)
        if isinstance(exc, AnymailInvalidAddress):
            return ProviderError(_detail(exc), permanent=True, code=Code.INVALID_ADDRESS)
        if isinstance(exc, AnymailConfigurationError):
            return ProviderError(_detail(exc), permanent=True, code=Code.CONFIGURATION)
        if isinstance(exc, AnymailUnsupportedFeature):
            return ProviderError(_detail(exc), permanent=True, code=Code.BAD_REQUEST)
        if isinstance(exc, AnymailRequestsAPIError):
            response = exc.response
            if response is None:
                # No answer: anymail re-raises requests' ConnectionError/Timeout under its own name.
                return ProviderError(_detail(exc), permanent=False, code=Code.UNAVAILABLE)
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            detail = summarize_http_error(f"{exc.esp_name or self.kind} API", response.status_code, json_body(response))
            return http_status_error(response.status_code, detail, retry_after=retry_after)
        return ProviderError(_detail(exc), permanent=True, code=Code.BAD_REQUEST)


class SendGridProvider(AnymailProvider):
    kind = "sendgrid"
    backend = "anymail.backends.sendgrid.EmailBackend"
    tracking_view = "anymail.webhooks.sendgrid.SendGridTrackingWebhookView"
    secret_fields = ("api_key", "webhook_secret")

    def backend_kwargs(self) -> dict:
        kwargs = {"api_key": self.config["api_key"], "timeout": self.config["timeout"]}
        if self.config["api_url"]:
            kwargs["api_url"] = self.config["api_url"] + "/"  # e.g. https://api.sendgrid.com/v3/
        return kwargs

    @classmethod
    def hard_bounce(cls, event) -> bool:
        # A bounce event's `type` is "bounce" (permanent) or "blocked" (a temporary refusal the
        # receiving server may lift); SendGrid docs, "Event Webhook Reference", Delivery events.
        return (event.esp_event or {}).get("type", "bounce") != "blocked"


class MailgunProvider(AnymailProvider):
    kind = "mailgun"
    backend = "anymail.backends.mailgun.EmailBackend"
    tracking_view = "anymail.webhooks.mailgun.MailgunTrackingWebhookView"
    secret_fields = ("api_key", "webhook_secret", "webhook_signing_key")
    # Mailgun signs every webhook with the account's HTTP webhook signing key.
    webhook_fields = ("webhook_secret", "webhook_signing_key")
    own_fields = ("sender_domain",)

    @classmethod
    def tracking_view_kwargs(cls, config: dict) -> dict:
        return {**super().tracking_view_kwargs(config), "webhook_signing_key": config["webhook_signing_key"]}

    @classmethod
    def validate_own(cls, config: dict) -> dict:
        # Optional: anymail takes the domain of from_email when it is not set.
        return {"sender_domain": optional_str(config, "sender_domain")}

    def backend_kwargs(self) -> dict:
        kwargs = {"api_key": self.config["api_key"], "timeout": self.config["timeout"]}
        if self.config["sender_domain"]:
            kwargs["sender_domain"] = self.config["sender_domain"]
        if self.config["api_url"]:
            # EU accounts live at https://api.eu.mailgun.net/v3 (Mailgun docs, "Base URL").
            kwargs["api_url"] = self.config["api_url"] + "/"
        return kwargs


class PostmarkProvider(AnymailProvider):
    kind = "postmark"
    backend = "anymail.backends.postmark.EmailBackend"
    tracking_view = "anymail.webhooks.postmark.PostmarkTrackingWebhookView"
    secret_fields = ("server_token", "webhook_secret")

    def backend_kwargs(self) -> dict:
        kwargs = {"server_token": self.config["server_token"], "timeout": self.config["timeout"]}
        if self.config["api_url"]:
            kwargs["api_url"] = self.config["api_url"] + "/"
        return kwargs

    @classmethod
    def hard_bounce(cls, event) -> bool:
        # anymail maps SoftBounce (and VirusNotification) to `bounced` too; only HardBounce is
        # permanent (Postmark docs, "Bounce webhook", bounce types).
        return (event.esp_event or {}).get("Type") == "HardBounce"


class AmazonSesProvider(AnymailProvider):
    """Amazon SES v2 through boto3 (anymail's amazon_ses backend is not requests-based)."""

    kind = "amazon_ses"
    backend = "anymail.backends.amazon_ses.EmailBackend"
    # SES events reach us through an SNS topic subscription; the view confirms the subscription
    # with the provider's own AWS credentials.
    tracking_view = "anymail.webhooks.amazon_ses.AmazonSESTrackingWebhookView"
    secret_fields = ("secret_access_key", "webhook_secret")
    own_fields = ("access_key_id", "region")

    # SES v2 error codes that mean "later" (SES API reference, SendEmail "Errors").
    THROTTLING = frozenset({"TooManyRequestsException", "ThrottlingException", "LimitExceededException"})
    # SendEmail errors that are our account's or configuration's, not the message's: another
    # provider can still send it.
    PROVIDER_CODES = {
        "AccountSuspendedException": Code.ACCOUNT,
        "SendingPausedException": Code.ACCOUNT,
        "MailFromDomainNotVerifiedException": Code.CONFIGURATION,
        "NotFoundException": Code.CONFIGURATION,  # the configuration set or identity is gone
    }

    @classmethod
    def validate_own(cls, config: dict) -> dict:
        return {"access_key_id": require_str(config, "access_key_id"), "region": require_str(config, "region")}

    def guard(self, connection: BaseEmailBackend) -> None:
        outbound.guard_botocore(connection.client)

    def backend_kwargs(self) -> dict:
        client_params: dict = {
            # botocore retries throttling and 5xx itself (up to 3 more attempts): retries are the pipeline's.
            "config": {
                "retries": {"mode": "standard", "total_max_attempts": 1},
                "connect_timeout": self.config["timeout"],
                "read_timeout": self.config["timeout"],
            }
        }
        if self.config["api_url"]:
            client_params["endpoint_url"] = self.config["api_url"]
        return {"session_params": self.session_params(self.config), "client_params": client_params}

    @staticmethod
    def session_params(config: dict) -> dict:
        """boto3 session parameters: the provider's own AWS account."""
        return {
            "aws_access_key_id": config["access_key_id"],
            "aws_secret_access_key": config["secret_access_key"],
            "region_name": config["region"],
        }

    @classmethod
    def tracking_view_kwargs(cls, config: dict) -> dict:
        return {**super().tracking_view_kwargs(config), "session_params": cls.session_params(config)}

    @classmethod
    def hard_bounce(cls, event) -> bool:
        # SES bounceType: Permanent, Transient or Undetermined; only Permanent should be
        # suppressed (SES docs, "Bounce types" in the notification contents).
        bounce = (event.esp_event or {}).get("bounce") or {}
        return bounce.get("bounceType") == "Permanent"

    def classify(self, exc: AnymailError) -> ProviderError:
        from botocore.exceptions import BotoCoreError, ClientError

        cause = exc.__cause__
        if isinstance(exc, AnymailAPIError) and isinstance(cause, ClientError):
            error = cause.response.get("Error", {})
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400
            detail = summarize_http_error("Amazon SES", status, error)
            if error.get("Code") in self.THROTTLING:
                return ProviderError(detail, permanent=False, code=Code.RATE_LIMITED)
            if error.get("Code") in self.PROVIDER_CODES:
                return ProviderError(detail, permanent=True, code=self.PROVIDER_CODES[error["Code"]])
            # MessageRejected, BadRequestException, ...: 400s about this message that will repeat.
            return http_status_error(status, detail)
        if isinstance(exc, AnymailAPIError) and isinstance(cause, BotoCoreError):
            # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError: the network.
            return ProviderError(_detail(cause), permanent=False, code=Code.UNAVAILABLE)
        return super().classify(exc)


# --- Development sink -----------------------------------------------------------------------------


class ConsoleEmailProvider(EmailProvider):
    """Writes each message as `<VAR_DIR>/sinks/email/<timestamp>-<message id>.eml`, openable in a mail client."""

    kind = "console"

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        config = reject_unknown(config, cls.common_fields)
        config.setdefault("from_email", "AlertFlow <alertflow@localhost>")
        return {"from_email": cls.validate_from(config), "timeout": optional_timeout(config)}

    def send(self, out: Outgoing) -> Sent:
        message = self.build_message(out)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = sink_path("email", f"{stamp}-{file_safe(out.message_id)}.eml")
        path.write_bytes(message.message().as_bytes())
        logger.info("email to %s: %r written to %s", out.to, message.subject, path)
        return Sent(path.name)
