"""``email``: notifications as mail, sent over SMTP with the standard library.

Enabled by an ``email`` settings section::

    {"email": {"host": "smtp.example.com", "port": 587, "security": "starttls",
               "from": "灰度发布 <gray@example.com>",
               "username": "gray@example.com", "password": "...",
               "timeout": 10, "verify": true, "ca_file": "/etc/ssl/private-ca.pem"}}

``host`` and ``from`` are required. ``security`` is how the connection is protected:

- ``starttls`` (the default, port 587): a plain connection upgraded with STARTTLS; a
  server that does not offer STARTTLS gets nothing, not a message in clear.
- ``ssl`` (port 465): TLS from the first byte (``SMTP_SSL``).
- ``none`` (port 25): no encryption at all, the password included. Only for a relay on the
  same host or a trusted local network (a sidecar postfix, a test server).

TLS certificates are verified against the system's CAs, or only against ``ca_file`` (a PEM
bundle, for a private CA) when given; ``verify: false`` turns the check off. Each
message is multipart/alternative: the text part (``Message.text`` and the link) and an
HTML part (``Message.html``, else the text in a ``<pre>``, and the link as a link).
Mailbox addresses must be ASCII (no SMTPUTF8); display names may be in any language.
"""

from __future__ import annotations

import html
import re
import smtplib
import ssl
import urllib.parse
from collections.abc import Mapping, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from typing import Any, Literal, cast

import attrs

from grayrelease_core import Settings, ValidationError, hookimpl
from grayrelease_core.clock import Clock, SystemClock
from grayrelease_core.notify import DeliveryError, Message
from grayrelease_core.rules import rules_object, seconds

SECTION = "email"
FIELD = f"settings.{SECTION}"
Security = Literal["starttls", "ssl", "none"]
DEFAULT_PORTS: Mapping[str, int] = {"starttls": 587, "ssl": 465, "none": 25}
MAX_TIMEOUT = 300.0
MAX_ADDRESS = 254
"""Longest mailbox (``user@domain``) SMTP carries (RFC 5321's path limit less the brackets)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\]|\[IPv6:[0-9A-Fa-f:.]+\]")


@attrs.frozen
class EmailSettings:
    """The validated ``email`` settings section."""

    host: str
    """The SMTP server's host name or IP address."""
    sender: Address
    """``from``: the From header and the envelope sender."""
    security: Security = "starttls"
    """``starttls``, ``ssl`` or ``none`` (a local relay only)."""
    port: int = 587
    """The server's port; by default 587, 465 or 25 after ``security``."""
    username: str | None = None
    """Log in with this name (and ``password``) when given."""
    password: str | None = attrs.field(default=None, repr=False)
    """Kept out of ``repr`` and of every error message."""
    timeout: float = 10.0
    """Seconds to wait for the connection and for each answer of the server."""
    verify: bool = True
    """Check the server's certificate and host name (turn off only for a test server)."""
    ca_file: str | None = None
    """A PEM file of the CAs to trust instead of the system's (a private CA)."""

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> EmailSettings:
        """Validate the section; each error names its field (``settings.email.from``)."""
        data = rules_object(
            section,
            allowed=(
                "host",
                "port",
                "from",
                "username",
                "password",
                "security",
                "timeout",
                "verify",
                "ca_file",
            ),
            required=("host", "from"),
            field=FIELD,
        )
        security = data.get("security", "starttls")
        if security not in DEFAULT_PORTS:
            raise ValidationError(
                f"{FIELD}.security", "must be starttls, ssl or none", value=security
            )
        try:
            sender = parse_address(data["from"])
        except ValueError as exc:
            raise ValidationError(f"{FIELD}.from", str(exc), value=data["from"]) from exc
        username = _credential(data.get("username"), f"{FIELD}.username")
        password = _credential(data.get("password"), f"{FIELD}.password")
        if (username is None) != (password is None):
            missing = "password" if password is None else "username"
            raise ValidationError(f"{FIELD}.{missing}", "is required with a username and password")
        verify = data.get("verify", True)
        if not isinstance(verify, bool):
            raise ValidationError(f"{FIELD}.verify", "must be true or false", value=verify)
        ca_file = data.get("ca_file")
        if ca_file is not None and (not isinstance(ca_file, str) or not ca_file.strip()):
            raise ValidationError(f"{FIELD}.ca_file", "must be the path of a PEM file of CAs")
        return cls(
            host=_host(data["host"], f"{FIELD}.host"),
            sender=sender,
            security=cast(Security, security),
            port=_port(data.get("port", DEFAULT_PORTS[security]), f"{FIELD}.port"),
            username=username,
            password=password,
            timeout=seconds(data.get("timeout", 10), f"{FIELD}.timeout", MAX_TIMEOUT),
            verify=verify,
            ca_file=ca_file,
        )


class EmailNotifier:
    """The ``email`` channel: one SMTP connection per message, all recipients in ``To``."""

    name = "email"
    requires_recipients = True
    """Routing must give addresses: a mail to nobody cannot be sent."""

    def __init__(self, settings: EmailSettings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()
        self._tls = tls_context(settings)
        self._where = f"email via {settings.host}:{settings.port}"

    def __repr__(self) -> str:
        return f"EmailNotifier(host={self.settings.host!r}, port={self.settings.port})"

    def check_recipient(self, recipient: str) -> None:
        """Refuse a malformed address when routing names it, not at the first alert.

        :raises ValueError: it is not a mailbox this channel can send to.
        """
        parse_address(recipient)

    def send(self, message: Message, recipients: Sequence[str]) -> None:
        to = self._recipients(recipients)
        mail = self.render(message, to)
        envelope = [address.addr_spec for address in to]
        smtp = None
        handed_over = False
        try:
            smtp = self._connect()
            refused = smtp.send_message(
                mail, from_addr=self.settings.sender.addr_spec, to_addrs=envelope
            )
            handed_over = True
        except smtplib.SMTPRecipientsRefused as exc:
            # Nobody got it: worth another try only if every refusal was temporary.
            raise DeliveryError(
                f"{self._where}: every recipient was refused: {_refusals(exc.recipients)}",
                retryable=all(400 <= code < 500 for code, _ in exc.recipients.values()),
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise self._error(exc) from exc
        finally:
            if smtp is not None:
                _hang_up(smtp, polite=handed_over)
        if refused:
            # The others have it; retrying would send it to them twice.
            raise DeliveryError(
                f"{self._where}: delivered to {len(envelope) - len(refused)} of "
                f"{len(envelope)} recipients; refused: {_refusals(refused)}",
                retryable=False,
            )

    def render(self, message: Message, to: Sequence[Address]) -> EmailMessage:
        """The mail for ``message``: headers, the text part and the HTML part."""
        mail = EmailMessage(policy=default_policy)
        # The title is one line by contract; folding any stray line break keeps it a header.
        mail["Subject"] = " ".join(message.title.split())
        mail["From"] = self.settings.sender
        mail["To"] = tuple(to)
        mail["Date"] = format_datetime(self._clock.now())
        mail["Message-ID"] = make_msgid(domain=self.settings.sender.domain)
        # RFC 3834: vacation responders and list servers must not answer a robot.
        mail["Auto-Submitted"] = "auto-generated"
        text = message.text.rstrip()
        if message.link:
            text = f"{text}\n\n{message.link}"
        # Quoted-printable keeps every part 7-bit: no relay needs 8BITMIME to carry it.
        mail.set_content(text + "\n", cte="quoted-printable")
        mail.add_alternative(_html(message), subtype="html", cte="quoted-printable")
        return mail

    # --- the SMTP session -------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        smtp: smtplib.SMTP
        if settings.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout, context=self._tls
            )
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if settings.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        f"{self._where}: the server does not offer STARTTLS; not sending in "
                        'clear (set security to "ssl" for port 465, or "none" for a local '
                        "relay)",
                        retryable=False,
                    )
                smtp.starttls(context=self._tls)
                smtp.ehlo_or_helo_if_needed()
            if settings.username is not None and settings.password is not None:
                smtp.login(settings.username, settings.password)
        except BaseException:
            _hang_up(smtp, polite=False)
            raise
        return smtp

    def _recipients(self, recipients: Sequence[str]) -> list[Address]:
        if isinstance(recipients, str):
            recipients = [recipients]
        parsed: dict[str, Address] = {}
        invalid: list[str] = []
        for recipient in recipients:
            try:
                address = parse_address(recipient)
            except ValueError as exc:
                invalid.append(f"{recipient!r} ({exc})")
            else:
                parsed.setdefault(address.addr_spec.lower(), address)
        if invalid:
            raise DeliveryError(
                f"{self._where}: not valid email addresses: {'; '.join(invalid)}",
                retryable=False,
            )
        if not parsed:
            raise DeliveryError(f"{self._where}: no recipients", retryable=False)
        return list(parsed.values())

    def _error(self, exc: smtplib.SMTPException | OSError) -> DeliveryError:
        where = self._where
        if isinstance(exc, smtplib.SMTPResponseException):
            # 535 authentication, 550 refused, 552 too big: the same mail fails again.
            code, text = exc.smtp_code, _text(exc.smtp_error)
            what = {
                smtplib.SMTPAuthenticationError: "login refused",
                smtplib.SMTPSenderRefused: "sender refused",
                smtplib.SMTPDataError: "message refused",
                smtplib.SMTPConnectError: "connection refused by the server",
                smtplib.SMTPHeloError: "greeting refused",
            }.get(type(exc), "refused")
            return DeliveryError(
                f"{where}: {what}: SMTP {code} {text}", retryable=not 500 <= code < 600
            )
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            # smtplib reports a read that timed out as a disconnection; the timeout is the news.
            if isinstance(exc.__context__, TimeoutError):
                return DeliveryError(
                    f"{where}: no answer within {self.settings.timeout:g} s", retryable=True
                )
            return DeliveryError(
                f"{where}: the server closed the connection: {exc}", retryable=True
            )
        if isinstance(exc, smtplib.SMTPException):
            # What the server lacks (AUTH, STARTTLS after all, a login method) stays lacking.
            return DeliveryError(f"{where}: {exc}", retryable=False)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DeliveryError(
                f"{where}: the server's certificate was not accepted ({exc.verify_message}); "
                f"check {FIELD}.host and {FIELD}.ca_file",
                retryable=False,
            )
        if isinstance(exc, ssl.SSLError):
            return DeliveryError(f"{where}: TLS handshake failed: {exc}", retryable=True)
        if isinstance(exc, ConnectionRefusedError):
            return DeliveryError(f"{where}: connection refused", retryable=True)
        if isinstance(exc, TimeoutError):
            return DeliveryError(
                f"{where}: no answer within {self.settings.timeout:g} s", retryable=True
            )
        return DeliveryError(
            f"{where}: connection failed: {type(exc).__name__}: {exc}", retryable=True
        )


# --- addresses ---------------------------------------------------------------------------------


def parse_address(value: Any) -> Address:
    """One mailbox (``user@example.com`` or ``Name <user@example.com>``) as an ``Address``.

    :raises ValueError: not exactly one valid ASCII mailbox, or a line break or other control
        character that could smuggle a header in.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an email address")
    if _CONTROL.search(value):
        raise ValueError("must not contain line breaks or control characters")
    try:
        header = default_policy.header_factory("To", value)
        addresses = header.addresses
        groups = header.groups
    except Exception as exc:  # the parser raises IndexError, HeaderParseError, ...
        raise ValueError("is not an email address") from exc
    if header.defects or len(addresses) != 1 or any(g.display_name is not None for g in groups):
        raise ValueError("must be one email address, like name@example.com")
    address: Address = addresses[0]
    if not address.username or not address.domain:
        raise ValueError("must be one email address, like name@example.com")
    if not address.addr_spec.isascii():
        raise ValueError("the mailbox must be ASCII (a display name may be in any language)")
    if not _DOMAIN.fullmatch(address.domain) or len(address.addr_spec) > MAX_ADDRESS:
        raise ValueError(f"has an invalid domain {address.domain!r}")
    return Address(address.display_name, address.username, address.domain)


def _refusals(refused: Mapping[str, tuple[int, bytes | str]]) -> str:
    return "; ".join(
        f"{address} (SMTP {code} {_text(text)})" for address, (code, text) in refused.items()
    )


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


# --- rendering ---------------------------------------------------------------------------------


def _html(message: Message) -> str:
    body = message.html or f"<pre>{html.escape(message.text.rstrip())}</pre>"
    if message.link:
        link = html.escape(message.link)
        # Only a web link becomes clickable; anything else is shown, never followed.
        if urllib.parse.urlsplit(message.link).scheme in ("http", "https"):
            body += f'\n<p><a href="{link}">{link}</a></p>'
        else:
            body += f"\n<p>{link}</p>"
    return (
        '<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8"></head>\n'
        f"<body>\n{body}\n</body>\n</html>\n"
    )


# --- transport ---------------------------------------------------------------------------------


def tls_context(settings: EmailSettings) -> ssl.SSLContext:
    """The client TLS context ``settings`` ask for.

    :raises ValidationError: ``ca_file`` cannot be read or holds no certificate.
    """
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ValidationError(
            f"{FIELD}.ca_file", f"cannot load CA certificates: {exc}", value=settings.ca_file
        ) from exc
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _hang_up(smtp: smtplib.SMTP, *, polite: bool) -> None:
    # QUIT only after a delivery: once the mail is handed over its answer changes nothing,
    # and after a failure (a broken TLS handshake, a stalled server) it could only wait.
    try:
        if polite:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


# --- validating settings -----------------------------------------------------------------------


def _host(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be the SMTP server's host name or IP address")
    host = value.strip()
    if "://" in host or _CONTROL.search(host) or any(c.isspace() for c in host):
        raise ValidationError(
            field, "must be a host name or IP address (the port goes in port)", value=value
        )
    return host


def _port(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValidationError(field, "must be a port number from 1 to 65535", value=value)
    return value


def _credential(value: Any, field: str) -> str | None:
    if value is None:
        return None
    # smtplib encodes AUTH PLAIN and LOGIN as ASCII; anything else fails at the first send.
    if not isinstance(value, str) or not value or not value.isascii() or _CONTROL.search(value):
        raise ValidationError(field, "must be a non-empty ASCII string without control characters")
    return value


@hookimpl
def grayrelease_register_notifiers(settings: Settings, clock: Clock) -> list[EmailNotifier]:
    # Present but empty still counts as configured, so a forgotten host is an error, not silence.
    if SECTION not in settings.sections:
        return []
    return [EmailNotifier(EmailSettings.from_section(settings.section(SECTION)), clock=clock)]
