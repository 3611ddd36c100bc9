"""The ``email`` channel against a real SMTP server: what arrives, and how failures are told."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from grayrelease_plugins.notifiers.email import EmailNotifier, EmailSettings, parse_address

from grayrelease_core import ManualClock, Settings, ValidationError
from grayrelease_core.notify import DeliveryError, Message, Notifier, Severity
from grayrelease_core.plugin_manager import collect, make_plugin_manager

from .loopback import free_port
from .smtp_server import (
    PASSWORD,
    USER,
    Received,
    SmtpServer,
    StartServer,
    TlsFiles,
    smtp_server,
    tls_files,
)

__all__ = ["smtp_server", "tls_files"]  # the imported fixtures, used by name

NOW = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
TITLE = "[grayrelease] 自动回滚：缓存配置金丝雀发布"  # noqa: RUF001 - Chinese punctuation
TEXT = "计划 p-1 已自动回滚。\n错误率 5.2% > 阈值 1%，见 <dashboard> & 日志。"  # noqa: RUF001
LINK = "https://gray.example.com/plans/p-1?tab=events&x=1"
MESSAGE = Message(
    title=TITLE, text=TEXT, markdown="*unused*", severity=Severity.CRITICAL, link=LINK
)
ALICE = "alice@example.com"
BOB = "bob@example.com"


def notifier(section: Mapping[str, Any]) -> EmailNotifier:
    return EmailNotifier(EmailSettings.from_section(section), clock=ManualClock(NOW))


def only(server: SmtpServer) -> Received:
    [received] = server.mailbox.received
    return received


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    # SMTP carries lines as CRLF; quoted-printable decodes them as such.
    return (
        text.get_content().replace("\r\n", "\n"),
        html.get_content().replace("\r\n", "\n"),
    )


def refusal(channel: EmailNotifier, recipients: list[str] | None = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        channel.send(MESSAGE, recipients if recipients is not None else [ALICE])
    return caught.value


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


# --- what arrives ------------------------------------------------------------------------------


def test_the_received_mail_has_the_title_both_parts_and_the_link(
    smtp_server: StartServer,
) -> None:
    server = smtp_server()
    section = server.settings(security="none", **{"from": "灰度发布 <gray@example.com>"})
    notifier(section).send(MESSAGE, [ALICE, f"Bob 鲍勃 <{BOB}>"])

    received = only(server)
    mail = received.message
    assert received.mail_from == "gray@example.com"
    assert received.rcpt_tos == [ALICE, BOB]
    assert not received.tls
    assert mail["Subject"] == TITLE
    assert mail["From"].addresses[0].display_name == "灰度发布"
    assert mail["From"].addresses[0].addr_spec == "gray@example.com"
    assert [a.addr_spec for a in mail["To"].addresses] == [ALICE, BOB]
    assert mail["To"].addresses[1].display_name == "Bob 鲍勃"
    assert parsedate_to_datetime(mail["Date"]) == NOW
    assert mail["Message-ID"].startswith("<")
    assert mail["Message-ID"].endswith("@example.com>")
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    text, html = parts(mail)
    assert text == f"{TEXT}\n\n{LINK}\n"
    escaped = "计划 p-1 已自动回滚。\n错误率 5.2% &gt; 阈值 1%，见 &lt;dashboard&gt; &amp; 日志。"  # noqa: RUF001
    assert f"<pre>{escaped}</pre>" in html
    assert '<a href="https://gray.example.com/plans/p-1?tab=events&amp;x=1">' in html


def test_the_headers_on_the_wire_are_ascii_with_encoded_words(smtp_server: StartServer) -> None:
    server = smtp_server()
    channel = notifier(server.settings(security="none", **{"from": "灰度 <gray@example.com>"}))
    mail = channel.render(MESSAGE, [parse_address(ALICE)])
    raw = mail.as_bytes()
    assert raw.isascii()
    headers = raw.split(b"\n\n", 1)[0]
    assert b"Subject: [grayrelease] =?utf-8?b?" in headers
    assert TITLE.encode() not in raw


def test_the_html_part_is_the_messages_html_when_given(smtp_server: StartServer) -> None:
    server = smtp_server()
    html_body = "<h1>自动回滚</h1><p>错误率 5.2%</p>"
    message = Message(title=TITLE, text=TEXT, markdown="", html=html_body)
    notifier(server.settings(security="none")).send(message, [ALICE])

    text, html = parts(only(server).message)
    assert text == f"{TEXT}\n"
    assert html_body in html
    assert "<pre>" not in html
    assert "<a " not in html


def test_each_mail_has_its_own_message_id(smtp_server: StartServer) -> None:
    server = smtp_server()
    channel = notifier(server.settings(security="none"))
    channel.send(MESSAGE, [ALICE])
    channel.send(MESSAGE, [ALICE])
    first, second = server.mailbox.received
    assert first.message["Message-ID"] != second.message["Message-ID"]


def test_a_line_break_in_the_title_cannot_add_a_header(smtp_server: StartServer) -> None:
    server = smtp_server()
    message = Message(title="回滚\r\nBcc: eve@example.com", text="t", markdown="")
    notifier(server.settings(security="none")).send(message, [ALICE])

    received = only(server)
    assert received.message["Subject"] == "回滚 Bcc: eve@example.com"
    assert received.message["Bcc"] is None
    assert received.rcpt_tos == [ALICE]


def test_starttls_with_login(smtp_server: StartServer, tls_files: TlsFiles) -> None:
    server = smtp_server(security="starttls", auth=True)
    section = server.settings(username=USER, password=PASSWORD, ca_file=str(tls_files.cert))
    notifier(section).send(MESSAGE, [ALICE])

    received = only(server)
    assert received.tls
    assert received.login == USER
    assert received.message["Subject"] == TITLE
    assert parts(received.message)[0] == f"{TEXT}\n\n{LINK}\n"


def test_implicit_tls_with_login(smtp_server: StartServer, tls_files: TlsFiles) -> None:
    server = smtp_server(security="ssl", auth=True)
    section = server.settings(
        security="ssl", username=USER, password=PASSWORD, ca_file=str(tls_files.cert)
    )
    notifier(section).send(MESSAGE, [ALICE])

    received = only(server)
    assert received.tls
    assert received.login == USER
    assert received.message["Subject"] == TITLE


def test_verify_false_accepts_an_untrusted_certificate(smtp_server: StartServer) -> None:
    server = smtp_server(security="ssl")
    notifier(server.settings(security="ssl", verify=False)).send(MESSAGE, [ALICE])
    assert only(server).tls


# --- failures ----------------------------------------------------------------------------------


def test_starttls_refuses_to_send_in_clear_when_the_server_offers_no_tls(
    smtp_server: StartServer,
) -> None:
    server = smtp_server(auth=False)
    error = refusal(notifier(server.settings(username=USER, password=PASSWORD)))
    assert not error.retryable
    assert "does not offer STARTTLS" in str(error)
    assert server.mailbox.received == []
    assert server.mailbox.logins == []


def test_a_wrong_password_is_not_retryable(smtp_server: StartServer, tls_files: TlsFiles) -> None:
    server = smtp_server(security="starttls", auth=True)
    section = server.settings(username=USER, password="wrong-pass", ca_file=str(tls_files.cert))
    error = refusal(notifier(section))
    assert not error.retryable
    assert "login refused: SMTP 535" in str(error)
    assert "wrong-pass" not in str(error)
    assert server.mailbox.logins
    assert not any(ok for _, ok in server.mailbox.logins)
    assert server.mailbox.received == []


@pytest.mark.parametrize(
    ("command", "reply", "retryable"),
    [
        ("DATA", "451 4.3.0 Try again later", True),
        ("MAIL", "421 4.7.0 Too many connections", True),
        ("DATA", "552 5.3.4 Message too big", False),
        ("MAIL", "550 5.7.1 Sender not allowed", False),
    ],
)
def test_server_replies_map_to_retryable_by_class(
    smtp_server: StartServer, command: str, reply: str, retryable: bool
) -> None:
    server = smtp_server()
    server.mailbox.replies[command] = reply
    error = refusal(notifier(server.settings(security="none")))
    assert error.retryable is retryable
    assert f"SMTP {reply}" in str(error)
    assert server.mailbox.received == []


def test_one_recipient_refused_is_not_retryable_and_named(smtp_server: StartServer) -> None:
    server = smtp_server()
    server.mailbox.refuse[BOB] = "550 5.1.1 No such user"
    error = refusal(notifier(server.settings(security="none")), [ALICE, BOB])
    assert not error.retryable
    assert f"{BOB} (SMTP 550 5.1.1 No such user)" in str(error)
    assert ALICE not in str(error).split("refused:")[1]
    assert only(server).rcpt_tos == [ALICE]


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("450 4.2.1 Mailbox busy", True), ("550 5.1.1 No such user", False)],
)
def test_every_recipient_refused(smtp_server: StartServer, reply: str, retryable: bool) -> None:
    server = smtp_server()
    server.mailbox.refuse.update({ALICE: reply, BOB: reply})
    error = refusal(notifier(server.settings(security="none")), [ALICE, BOB])
    assert error.retryable is retryable
    assert "every recipient was refused" in str(error)
    assert f"{ALICE} (SMTP {reply})" in str(error)
    assert server.mailbox.received == []


def test_a_server_that_is_down_is_retryable() -> None:
    error = refusal(notifier({"host": "127.0.0.1", "port": free_port(), "from": USER}))
    assert error.retryable
    assert "connection refused" in str(error)


def test_a_server_that_never_answers_times_out_retryably(silent_port: int) -> None:
    section = {"host": "127.0.0.1", "port": silent_port, "from": USER, "timeout": 0.3}
    error = refusal(notifier(section))
    assert error.retryable
    assert "no answer within 0.3 s" in str(error)


def test_a_failed_tls_handshake_is_retryable(smtp_server: StartServer) -> None:
    server = smtp_server()  # speaks plain SMTP where TLS is expected
    error = refusal(notifier(server.settings(security="ssl", verify=False)))
    assert error.retryable
    assert "TLS handshake failed" in str(error)


def test_an_untrusted_certificate_is_not_retryable(smtp_server: StartServer) -> None:
    server = smtp_server(security="starttls")
    error = refusal(notifier(server.settings()))  # the system CAs do not know the test CA
    assert not error.retryable
    assert "certificate was not accepted" in str(error)
    assert server.mailbox.received == []


@pytest.mark.parametrize(
    "recipient",
    [
        "not an address",
        "alice@",
        "alice@example.com, eve@example.com",
        "alice@example.com\r\nBcc: eve@example.com",
        "alice@example.com\nX-Injected: 1",
        "用户@example.com",
        "team: alice@example.com;",
        "",
    ],
)
def test_invalid_recipients_are_refused_before_connecting(recipient: str) -> None:
    # Nothing listens on the port: had it connected, the error would be a retryable refusal.
    channel = notifier({"host": "127.0.0.1", "port": free_port(), "from": USER})
    error = refusal(channel, ["carol@example.org", recipient])
    assert not error.retryable
    assert "not valid email addresses" in str(error)
    assert repr(recipient) in str(error)
    assert "carol" not in str(error)


def test_no_recipients_is_not_retryable() -> None:
    channel = notifier({"host": "127.0.0.1", "port": free_port(), "from": USER})
    error = refusal(channel, [])
    assert not error.retryable
    assert "no recipients" in str(error)


# --- settings ----------------------------------------------------------------------------------


def test_settings_defaults_and_secret_password() -> None:
    parsed = EmailSettings.from_section(
        {"host": "smtp.example.com", "from": USER, "username": USER, "password": "hunter22"}
    )
    assert (parsed.security, parsed.port, parsed.timeout, parsed.verify) == (
        "starttls",
        587,
        10.0,
        True,
    )
    assert "hunter22" not in repr(parsed)
    assert "hunter22" not in repr(EmailNotifier(parsed))
    assert EmailSettings.from_section({"host": "h", "from": USER, "security": "ssl"}).port == 465
    assert EmailSettings.from_section({"host": "h", "from": USER, "security": "none"}).port == 25


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"from": USER}, "settings.email.host"),
        ({"host": "h"}, "settings.email.from"),
        ({"host": "h", "from": "not an address"}, "settings.email.from"),
        ({"host": "h", "from": "a@example.com\r\nBcc: eve@example.com"}, "settings.email.from"),
        ({"host": "smtp://h", "from": USER}, "settings.email.host"),
        ({"host": "h", "from": USER, "port": 0}, "settings.email.port"),
        ({"host": "h", "from": USER, "port": "587"}, "settings.email.port"),
        ({"host": "h", "from": USER, "security": "tls"}, "settings.email.security"),
        ({"host": "h", "from": USER, "timeout": 0}, "settings.email.timeout"),
        ({"host": "h", "from": USER, "timeout": float("nan")}, "settings.email.timeout"),
        ({"host": "h", "from": USER, "verify": "yes"}, "settings.email.verify"),
        ({"host": "h", "from": USER, "username": USER}, "settings.email.password"),
        ({"host": "h", "from": USER, "password": "p"}, "settings.email.username"),
        (
            {"host": "h", "from": USER, "username": USER, "password": "密码"},
            "settings.email.password",
        ),
        ({"host": "h", "from": USER, "ca_file": "/nonexistent/ca.pem"}, "settings.email.ca_file"),
        ({"host": "h", "from": USER, "sender": USER}, "settings.email.sender"),
    ],
)
def test_settings_errors_name_the_field(section: Mapping[str, Any], field: str) -> None:
    pm = make_plugin_manager(load_entrypoints=False)  # the channel is a default plugin
    with pytest.raises(ValidationError) as caught:
        collect(
            pm,
            "grayrelease_register_notifiers",
            settings=Settings.from_mapping({"email": section}),
            store=None,
            clock=ManualClock(),
        )
    assert caught.value.field == field


def test_hook_registers_the_channel_only_with_a_section() -> None:
    pm = make_plugin_manager(load_entrypoints=False)  # the channel is a default plugin

    def email_notifiers(data: Mapping[str, Any]) -> list[EmailNotifier]:
        contributions = collect(
            pm,
            "grayrelease_register_notifiers",
            settings=Settings.from_mapping(data),
            store=None,
            clock=ManualClock(),
        )
        return [item for _, item in contributions if isinstance(item, EmailNotifier)]

    assert email_notifiers({}) == []
    [registered] = email_notifiers({"email": {"host": "smtp.example.com", "from": USER}})
    assert registered.name == "email"
    assert registered.settings.host == "smtp.example.com"
    assert isinstance(registered, Notifier)


def test_parse_address_keeps_the_display_name() -> None:
    address = parse_address("灰度发布 <gray@example.com>")
    assert (address.display_name, address.addr_spec) == ("灰度发布", "gray@example.com")
    assert parse_address("ops@[127.0.0.1]").domain == "[127.0.0.1]"
    for bad in ("a@-b", "a@b..c", "<>", "x <a@b> y", "a@b\x00"):
        with pytest.raises(ValueError, match=r"."):
            parse_address(bad)
