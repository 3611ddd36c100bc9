"""``inbox``: in-system messages, one per recipient, read in the console.

Always registered: it needs no settings, only the plan store that keeps the messages.
The recipients are user names (the actors that log in); with none routed, a plan's
messages go to its author. A message is stored once per notification and recipient, so a
delivery retried after a crash does not leave it twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from grayrelease_core import PlanStore, Settings, hookimpl
from grayrelease_core.inbox import InboxMessage
from grayrelease_core.notify import DeliveryError, Message


class InboxNotifier:
    """The ``inbox`` channel: writes messages into the plan store's inbox table."""

    name = "inbox"

    def __init__(self, store: PlanStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return "InboxNotifier()"

    def send(self, message: Message, recipients: Sequence[str]) -> None:
        if not message.key or message.at is None:
            raise DeliveryError(
                "inbox: only messages from the outbox (with a key and a time) can be stored",
                retryable=False,
            )
        try:
            self._store.add_inbox_messages(
                [
                    InboxMessage(
                        recipient=recipient,
                        notification_id=message.key,
                        plan_id=message.plan_id,
                        event=message.event,
                        severity=message.severity.value,
                        title=message.title,
                        body=message.markdown,
                        link=message.link,
                        created_at=message.at,
                    )
                    for recipient in dict.fromkeys(recipients)
                ]
            )
        except Exception as exc:  # the database is away: the outbox tries again later
            raise DeliveryError(
                f"inbox: storing the messages failed: {exc}", retryable=True
            ) from exc


@hookimpl
def grayrelease_register_notifiers(settings: Settings, store: PlanStore) -> list[InboxNotifier]:
    return [InboxNotifier(store)]
