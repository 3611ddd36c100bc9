"""In-system messages: what the ``inbox`` channel leaves for a person in the console."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from .wire import timestamp


@attrs.frozen
class InboxMessage:
    """One notification as one recipient's message; unread until they open it."""

    recipient: str
    notification_id: str
    """The outbox entry it came from: delivering it twice leaves one message."""
    plan_id: str
    event: str
    severity: str
    title: str
    body: str
    """Markdown."""
    link: str | None
    created_at: datetime
    read_at: datetime | None = None
    id: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "planId": self.plan_id,
            "event": self.event,
            "severity": self.severity,
            "title": self.title,
            "body": self.body,
            "link": self.link,
            "createdAt": timestamp(self.created_at),
            "readAt": timestamp(self.read_at),
            "read": self.read_at is not None,
        }
