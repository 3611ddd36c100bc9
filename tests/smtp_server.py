"""A real SMTP server (aiosmtpd) in the test process, as fixtures.

Import the fixtures into a test module (``from .smtp_server import smtp_server, tls_files``).
``smtp_server(...)`` starts a server on a free loopback port and returns it; every server a
test started is stopped after the test. Variants: plain, STARTTLS (``security="starttls"``)
or implicit TLS (``security="ssl"``) with a certificate made for the test session, and
AUTH LOGIN/PLAIN for ``USER``/``PASSWORD`` (``auth=True``). The server's ``mailbox`` keeps
what it received (parsed) and can be told to refuse a recipient or a command.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .loopback import free_port

USER = "robot@example.com"
PASSWORD = "s3cret-pass"
HOST = "127.0.0.1"


class TlsFiles(NamedTuple):
    """A self-signed certificate for ``localhost`` and ``127.0.0.1``, and its key."""

    cert: Path
    key: Path


class Received(NamedTuple):
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    """It came over an encrypted connection (STARTTLS or implicit TLS)."""
    login: str | None
    """The user it logged in as, if it did."""


class Mailbox:
    """The server's handler: accepts and keeps messages unless told otherwise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.refuse: dict[str, str] = {}
        """Recipient address → the reply to its RCPT (``550 5.1.1 no such user``)."""
        self.replies: dict[str, str] = {}
        """``MAIL`` or ``DATA`` → the reply to give instead of accepting (``451 4.3.0 ...``)."""
        self.logins: list[tuple[str, bool]] = []
        """Every AUTH attempt: (mechanism, succeeded)."""

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "MAIL" in self.replies:
            return self.replies["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if "DATA" in self.replies:
            return self.replies["DATA"]
        content = envelope.original_content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        assert server.transport is not None
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        with self._lock:
            self._received.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=message,
                    tls=server.transport.get_extra_info("ssl_object") is not None,
                    login=login,
                )
            )
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data == (USER.encode(), PASSWORD.encode())
        self.logins.append((mechanism, ok))
        # handled=False: aiosmtpd itself answers a failure (535), as a real server does.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


class SmtpServer:
    """A started server: where it listens and what it received."""

    def __init__(self, controller: Controller, mailbox: Mailbox, security: str) -> None:
        self.controller = controller
        self.mailbox = mailbox
        self.security = security

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """An ``email`` settings section for this server (trusting ``ca_file`` for TLS)."""
        return {"host": HOST, "port": self.port, "from": "robot@example.com", **overrides}

    def stop(self) -> None:
        self.controller.stop()


Security = Literal["none", "starttls", "ssl"]
StartServer = Callable[..., SmtpServer]


def server_context(files: TlsFiles) -> ssl.SSLContext:
    # CLIENT_AUTH purpose: a server context that asks no certificate of its clients.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for the session, made with the ``openssl`` command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: apt-get install openssl")
    directory = tmp_path_factory.mktemp("smtp-tls")
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(files.key),
            "-out",
            str(files.cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return files


@pytest.fixture
def smtp_server(tls_files: TlsFiles) -> Iterator[StartServer]:
    """Start servers: ``smtp_server(security="starttls", auth=True)``; all stopped after."""
    started: list[SmtpServer] = []

    def start(*, security: Security = "none", auth: bool = False) -> SmtpServer:
        mailbox = Mailbox()
        options: dict[str, Any] = {}
        if auth:
            options["authenticator"] = mailbox.authenticate
        if security == "starttls":
            options["tls_context"] = server_context(tls_files)
            # No command but EHLO, STARTTLS and QUIT before TLS: proof the client upgraded.
            options["require_starttls"] = True
            options["auth_required"] = auth
        elif security == "ssl":
            # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS throughout.
            options["auth_require_tls"] = False
        controller = Controller(
            mailbox,
            hostname=HOST,
            port=free_port(),
            ssl_context=server_context(tls_files) if security == "ssl" else None,
            server_hostname="mail.test",
            ready_timeout=5.0,
            **options,
        )
        controller.start()
        server = SmtpServer(controller, mailbox, security)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
