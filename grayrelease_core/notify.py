"""What a notification channel is: a message in, delivered or a ``DeliveryError`` out.

Channels are plugins (hook ``grayrelease_register_notifiers``). A channel sends one
rendered :class:`Message` to the recipients routing chose for it; it never decides what to
send or when to retry: the outbox does (a failing channel never blocks a plan operation).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import attrs


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@attrs.frozen
class Message:
    """One notification, rendered in the installation's language, ready for any channel."""

    title: str
    """One line: what happened to which plan (``[grayrelease] 自动回滚 - 缓存配置金丝雀发布``)."""
    text: str
    """Plain text body (email text part, SMS-free channels' text messages)."""
    markdown: str
    """Markdown body (DingTalk and WeCom markdown)."""
    html: str = ""
    """HTML body (the email's HTML part), already escaped; empty: the channel uses ``text``."""
    severity: Severity = Severity.INFO
    link: str | None = None
    """The plan in the console, when the installation knows its public URL."""
    template_params: tuple[tuple[str, str], ...] = ()
    """Short named values for template-based channels (SMS): ``(("plan", "..."), ...)``."""
    key: str = ""
    """The notification's id: the same on every retry, so a channel that can tell repeats
    apart (the inbox, SMS ``OutId``, a mail's ``Message-ID``) can drop a duplicate."""
    plan_id: str = ""
    event: str = ""
    """The plan event it tells of (``AUTO_ROLLBACK``)."""
    at: datetime | None = None
    """When the event happened."""

    def to_json(self) -> dict[str, Any]:
        """What the outbox stores (and ``from_json`` reads back)."""
        return {
            "title": self.title,
            "text": self.text,
            "markdown": self.markdown,
            "html": self.html,
            "severity": self.severity.value,
            "link": self.link,
            "templateParams": [list(pair) for pair in self.template_params],
            "key": self.key,
            "planId": self.plan_id,
            "event": self.event,
            "at": self.at.isoformat() if self.at else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            title=data["title"],
            text=data["text"],
            markdown=data["markdown"],
            html=data.get("html", ""),
            severity=Severity(data.get("severity", "info")),
            link=data.get("link"),
            template_params=tuple((k, v) for k, v in data.get("templateParams", ())),
            key=data.get("key", ""),
            plan_id=data.get("planId", ""),
            event=data.get("event", ""),
            at=datetime.fromisoformat(data["at"]) if data.get("at") else None,
        )


class DeliveryError(Exception):
    """A channel could not deliver. ``retryable``: try again later (a timeout, a rate limit,
    a 5xx); otherwise retrying cannot help (a bad token, a refused number)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        """Seconds the service asked to wait (its rate limit), when it said."""


@runtime_checkable
class Notifier(Protocol):
    """A notification channel, contributed through ``grayrelease_register_notifiers``."""

    name: str
    """``email``, ``dingtalk``, ``wecom``, ``sms``, ``inbox`` or a plugin's."""

    def send(self, message: Message, recipients: Sequence[str]) -> None:
        """Deliver ``message`` to ``recipients`` (addresses, phone numbers, user ids to
        mention: whatever the channel takes; may be empty for a group robot).

        :raises DeliveryError: it was not delivered.
        """
        ...
