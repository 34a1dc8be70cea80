"""A small real SMTP server (aiosmtpd) on 127.0.0.1 for integration tests and the demo.

    from smtpserver import smtp_server     # tests/ is on sys.path under pytest

    with smtp_server() as srv:                 # listening on 127.0.0.1:srv.port
        ...                                    # send mail to srv.host, srv.port
        assert srv.wait_for(2)                 # wait until two messages arrived
        msg = srv.messages[0].message          # email.message.EmailMessage, parsed
        srv.message_ids()                      # Counter of Message-ID headers received
        srv.stop()                             # an outage: the port refuses connections
        srv.start()                            # back up, on the same port

Everything received is kept in ``srv.messages`` (a list of :class:`Received`, in arrival
order, kept across stop/start). ``srv.reject`` maps a recipient address to an SMTP reply
string, e.g. ``{"gone@example.org": "550 5.1.1 no such user"}``, returned at RCPT TO.
``smtp_server(auth=("user", "secret"))`` requires AUTH PLAIN with those credentials
(allowed without TLS, for tests only). The server runs in aiosmtpd's own thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

__all__ = ["Received", "SmtpServer", "smtp_server"]


@dataclass(frozen=True)
class Received:
    """One message as the server got it: envelope and raw bytes, plus the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: EmailMessage = field(repr=False)


class _Handler:
    """aiosmtpd calls handle_RCPT and handle_DATA by these names."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_RCPT(
        self, srv: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._server.reject.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
        data = bytes(envelope.original_content or envelope.content)
        parsed = message_from_bytes(data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self._server._add(Received(envelope.mail_from, list(envelope.rcpt_tos), data, parsed))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SmtpServer:
    """A capturing SMTP server; see the module docstring."""

    host = "127.0.0.1"

    def __init__(self, *, port: int | None = None, auth: tuple[str, str] | None = None) -> None:
        self.port = port or _free_port()
        self.auth = auth
        self.reject: dict[str, str] = {}
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen (again) on ``self.port``."""
        if self._controller is not None:
            return
        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            kwargs = {
                "authenticator": self._authenticate,
                "auth_require_tls": False,
                "auth_required": True,
                # smtplib falls back from a refused PLAIN to LOGIN, which aiosmtpd answers by
                # waiting: offer PLAIN only so that a wrong password fails fast with 535.
                "auth_exclude_mechanism": ["LOGIN"],
            }
        # The port may linger for a moment after a stop; retry briefly instead of failing.
        for attempt in range(50):
            controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
            try:
                controller.start()
            except (OSError, RuntimeError):
                if attempt == 49:
                    raise
                time.sleep(0.05)
            else:
                self._controller = controller
                return

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until :meth:`start`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.auth is not None
            and auth_data.login.decode() == self.auth[0]
            and auth_data.password.decode() == self.auth[1]
        )
        return AuthResult(success=ok, handled=False)

    def _add(self, received: Received) -> None:
        with self._arrived:
            self.messages.append(received)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` messages have arrived; False on timeout."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)

    def message_ids(self) -> Counter[str]:
        """How many times each Message-ID was received."""
        with self._lock:
            return Counter(str(m.message["Message-ID"]) for m in self.messages)

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def smtp_server(
    *, port: int | None = None, auth: tuple[str, str] | None = None
) -> Iterator[SmtpServer]:
    """A started :class:`SmtpServer`, stopped when the block ends."""
    server = SmtpServer(port=port, auth=auth)
    server.start()
    try:
        yield server
    finally:
        server.stop()
