"""An SMTP server (aiosmtpd) that records messages and refuses on request."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class _Controller(Controller):
    """aiosmtpd's Controller on an ephemeral port, counting the connections it accepts."""

    def __init__(self, fake: SmtpFake) -> None:
        super().__init__(
            fake,
            hostname="127.0.0.1",
            port=0,
            server_hostname="fake-smtp.test",
            # AUTH over plain text: the fake has no certificate, and it only listens on loopback.
            authenticator=fake.authenticate,
            auth_require_tls=False,
        )
        self.fake = fake

    def factory(self):
        # create_server() calls the protocol factory once per accepted connection.
        with self.fake._lock:
            self.fake.connections += 1
        return super().factory()

    def _trigger_server(self) -> None:
        # Controller connects to self.port to check it is up: learn the port the OS chose first.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpFake:
    """`messages` holds what was accepted; `connections` counts TCP sessions.

    `refuse_recipient(address, "550 5.1.1 no such user")` answers RCPT TO for that address;
    `refuse_sender(address, "553 5.7.1 sender not owned")` answers MAIL FROM for that address;
    `reply_next("451 4.3.0 try later", times=2)` answers DATA of the next messages;
    `stall_next(2.0)` holds the reply to the next DATA that long (a provider that hangs), and
    sets `stalling` when it starts holding one, so a test can act at that moment, not after a guess;
    `require_login("user", "secret")` accepts AUTH only with that login (535 otherwise);
    `stop()` closes the port, so the next connection is refused.
    """

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._recipient_replies: dict[str, str] = {}
        self._sender_replies: dict[str, str] = {}
        self._data_replies: deque[str] = deque()
        self._login: tuple[bytes, bytes] | None = None
        self._stalls: deque[float] = deque()
        self.stalling = threading.Event()
        self._controller = _Controller(self)

    def start(self) -> SmtpFake:
        self._controller.start()
        self.connections = 0  # not the controller's own readiness probe
        return self

    def stop(self) -> None:
        if self._controller.server is not None or self._controller._thread is not None:
            self._controller.stop()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._controller.port

    def refuse_recipient(self, address: str, reply: str) -> None:
        self._recipient_replies[address.lower()] = reply

    def refuse_sender(self, address: str, reply: str) -> None:
        self._sender_replies[address.lower()] = reply

    def reply_next(self, reply: str, *, times: int = 1) -> None:
        self._data_replies.extend([reply] * times)

    def stall_next(self, seconds: float) -> None:
        self._stalls.append(seconds)

    def require_login(self, username: str, password: str) -> None:
        self._login = (username.encode(), password.encode())

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        """aiosmtpd's authenticator hook: a refused login is answered `535 5.7.8`."""
        given = (auth_data.login, auth_data.password) if isinstance(auth_data, LoginPassword) else None
        # handled=False: aiosmtpd answers (235, or 535 5.7.8) itself.
        return AuthResult(success=self._login is not None and given == self._login, handled=False)

    # --- aiosmtpd handler hooks ---

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self._sender_replies.get(address.lower())
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self._recipient_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self._stalls:
            seconds = self._stalls.popleft()
            if seconds:
                self.stalling.set()
            await asyncio.sleep(seconds)
        with self._lock:
            if self._data_replies:
                return self._data_replies.popleft()
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 2.0.0 Message accepted for delivery"
