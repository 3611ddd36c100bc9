"""The notification outbox: messages queued with the event that caused them, then delivered.

A plan action writes its notifications in the same transaction as its audit row, so a
committed event is never left untold and a rolled-back one never told. Delivery happens
later, in ``GrayRelease.deliver()`` (each tick, or ``grayrelease notify`` from cron): each
due notification is claimed (its attempt counter is the fence, so two workers never send
the same attempt), sent, and finished with a record of the attempt. A retryable failure
waits an exponential backoff (or what the service asked for); after ``max_attempts`` the
notification is ``FAILED`` and stays listed for operators.

A worker that dies between sending and recording leaves the notification claimed; once its
lease runs out another worker sends it again. That window (one send, seconds long) is the
only way a message can arrive twice, and channels that can tell repeats apart (the inbox,
by ``Message.key``) drop them.
"""

from __future__ import annotations

import enum
import itertools
import logging
import secrets
import time
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs

from .errors import ValidationError
from .notify import DeliveryError, Message, Notifier
from .rules import rules_object
from .wire import timestamp

log = logging.getLogger("grayrelease")
_SEQUENCE = itertools.count()
MAX_ERROR = 1000
"""Characters of a failure kept in an attempt record."""


class DeliveryState(enum.StrEnum):
    PENDING = "PENDING"
    """Waiting for its first try or its next retry (``next_attempt_at``)."""
    SENDING = "SENDING"
    """Claimed by a worker until ``lease_until``."""
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    """Given up: not retryable, or out of attempts."""


@attrs.frozen
class Attempt:
    """One try at delivering a notification."""

    number: int
    at: datetime
    delivered: bool
    error: str = ""
    retryable: bool = False
    duration_ms: int = 0


@attrs.frozen
class Notification:
    """One message for one channel and its recipients, with its delivery state."""

    id: str
    plan_id: str
    event: str
    channel: str
    recipients: tuple[str, ...]
    message: Message
    created_at: datetime
    next_attempt_at: datetime
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    """Tries so far, the one in progress included; also the claim's fence."""
    lease_until: datetime | None = None
    last_error: str = ""
    delivered_at: datetime | None = None
    history: tuple[Attempt, ...] = ()
    """Every attempt, oldest first (filled in by listings, not by the worker)."""

    def to_wire(self) -> dict[str, Any]:
        """As ``GET /notifications`` answers it, for operators."""
        return {
            "id": self.id,
            "planId": self.plan_id,
            "event": self.event,
            "channel": self.channel,
            "recipients": list(self.recipients),
            "severity": self.message.severity.value,
            "title": self.message.title,
            "state": self.state.value,
            "attempts": self.attempts,
            "createdAt": timestamp(self.created_at),
            "nextAttemptAt": (
                timestamp(self.next_attempt_at) if self.state is DeliveryState.PENDING else None
            ),
            "deliveredAt": timestamp(self.delivered_at),
            "lastError": self.last_error,
            "history": [
                {
                    "number": a.number,
                    "at": timestamp(a.at),
                    "delivered": a.delivered,
                    "retryable": a.retryable,
                    "error": a.error,
                    "durationMs": a.duration_ms,
                }
                for a in self.history
            ],
        }


@attrs.frozen
class DeliveryPolicy:
    """How hard the worker tries (settings ``notify``)."""

    max_attempts: int = 8
    retry_base: float = 30.0
    """Seconds before the first retry; each later retry waits twice as long."""
    retry_max: float = 3600.0
    """The longest wait between two tries."""
    lease: float = 120.0
    """Seconds a claimed notification belongs to its worker (longer than any send)."""
    batch: int = 100
    """Notifications a run looks at."""
    budget: float = 30.0
    """Seconds a run may spend sending before it leaves the rest to the next run."""

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds to wait after failed try number ``attempts``."""
        wait = min(self.retry_max, self.retry_base * 2.0 ** max(attempts - 1, 0))
        return max(wait, retry_after or 0.0)


POLICY_LIMITS: Mapping[str, tuple[float, float]] = {
    "max_attempts": (1, 100),
    "retry_base": (1, 86400),
    "retry_max": (1, 7 * 86400),
    "lease": (10, 3600),
    "batch": (1, 10_000),
    "budget": (1, 3600),
}


def parse_policy(data: Mapping[str, Any], field: str) -> DeliveryPolicy:
    values: dict[str, Any] = {}
    for name, (low, high) in POLICY_LIMITS.items():
        if name not in data:
            continue
        value = data[name]
        whole = name in ("max_attempts", "batch")
        if (
            isinstance(value, bool)
            or not isinstance(value, int if whole else int | float)
            or not low <= value <= high
        ):
            kind = "a whole number" if whole else "a number of seconds"
            raise ValidationError(
                f"{field}.{name}", f"must be {kind} from {low:g} to {high:g}", value=value
            )
        values[name] = value
    policy = DeliveryPolicy(**values)
    if policy.retry_max < policy.retry_base:
        raise ValidationError(f"{field}.retry_max", "must be at least retry_base")
    return policy


def notification_id(at: datetime) -> str:
    """A unique id that sorts in the order notifications were made: the event's millisecond,
    then this process's sequence (one transaction's notifications in their events' order),
    then randomness (other processes)."""
    millis = int(at.timestamp() * 1000)
    return f"{millis:013x}{next(_SEQUENCE) % 0x10000:04x}{secrets.token_hex(8)}"


class OutboxStore(Protocol):
    """The store methods the worker uses (the plan store has them)."""

    def due_notifications(
        self, now: datetime, limit: int, skip: Collection[str] = ()
    ) -> list[Notification]: ...

    def claim_notification(
        self, notification: Notification, now: datetime, lease: datetime
    ) -> bool: ...

    def finish_notification(
        self,
        notification: Notification,
        attempt: Attempt,
        state: DeliveryState,
        next_attempt_at: datetime,
    ) -> bool: ...


@attrs.define
class DeliveryReport:
    """What one delivery run did, for the CLI and the logs."""

    delivered: list[str] = attrs.Factory(list)
    retrying: list[str] = attrs.Factory(list)
    failed: list[str] = attrs.Factory(list)
    errors: list[str] = attrs.Factory(list)
    """Why each retry or failure happened (``id channel: error``)."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed": self.failed,
            "errors": self.errors,
        }


class Deliverer:
    """Sends due notifications through their channels, one claimed attempt at a time."""

    def __init__(
        self,
        store: OutboxStore,
        notifiers: Mapping[str, Notifier],
        policy: DeliveryPolicy,
        monotonic: Any = time.monotonic,
    ) -> None:
        self._store = store
        self._notifiers = notifiers
        self._policy = policy
        self._monotonic = monotonic
        self._resting: dict[str, datetime] = {}
        """Channels that failed retryably, and until when this process leaves them alone:
        one timeout per channel and run, not one per queued message."""

    def run(self, now: datetime) -> DeliveryReport:
        """Send what is due now, within the policy's time budget.

        Resting channels are left out of the query itself: otherwise a dead channel's backlog
        would fill every batch and hold back the channels that work. When a channel starts
        resting during the run, the rest of the batch is looked for again without it.
        """
        report = DeliveryReport()
        started = self._monotonic()
        lease = now + timedelta(seconds=self._policy.lease)
        for _ in range(len(self._notifiers) + 1):  # each round but the last rests a channel
            resting = self._resting_channels(now)
            batch = self._store.due_notifications(now, self._policy.batch, skip=resting)
            for notification in batch:
                if self._monotonic() - started > self._policy.budget:
                    return report
                if notification.channel in self._resting_channels(now):
                    continue
                if not self._store.claim_notification(notification, now, lease):
                    continue  # another worker has it
                claimed = attrs.evolve(notification, attempts=notification.attempts + 1)
                self._deliver(claimed, now, report)
            if self._resting_channels(now) == resting:
                break  # nothing new is resting: the batch was all there was to send
        return report

    def _resting_channels(self, now: datetime) -> frozenset[str]:
        return frozenset(name for name, until in self._resting.items() if until > now)

    def _deliver(self, notification: Notification, now: datetime, report: DeliveryReport) -> None:
        notifier = self._notifiers.get(notification.channel)
        began = self._monotonic()
        retry_after = None
        try:
            if notifier is None:
                raise DeliveryError(
                    f"no channel {notification.channel!r} is configured now", retryable=True
                )
            notifier.send(notification.message, notification.recipients)
        except Exception as exc:
            retryable = exc.retryable if isinstance(exc, DeliveryError) else True
            if isinstance(exc, DeliveryError):
                retry_after = exc.retry_after
            else:  # a channel's bug: logged in full, retried like a timeout
                log.exception("grayrelease: channel %s failed unexpectedly", notification.channel)
            error = (str(exc) or type(exc).__name__)[:MAX_ERROR]
            delivered = False
        else:
            retryable, error, delivered = False, "", True
        attempt = Attempt(
            number=notification.attempts,
            at=now,
            delivered=delivered,
            error=error,
            retryable=retryable,
            duration_ms=int((self._monotonic() - began) * 1000),
        )
        next_at = now
        if delivered:
            state = DeliveryState.DELIVERED
            report.delivered.append(notification.id)
        elif retryable and notification.attempts < self._policy.max_attempts:
            state = DeliveryState.PENDING
            next_at = now + timedelta(
                seconds=self._policy.backoff(notification.attempts, retry_after)
            )
            self._resting[notification.channel] = next_at
            report.retrying.append(notification.id)
        else:
            state = DeliveryState.FAILED
            report.failed.append(notification.id)
        if error:
            report.errors.append(f"{notification.id} {notification.channel}: {error}")
        if not self._store.finish_notification(notification, attempt, state, next_at):
            log.warning(
                "grayrelease: notification %s was reclaimed while being sent (lease too short?)",
                notification.id,
            )


@attrs.frozen
class NotifySettings:
    """The validated ``notify`` settings section (the routing is checked by the engine,
    which knows the channels)."""

    language: str = "zh"
    console_url: str | None = None
    policy: DeliveryPolicy = DeliveryPolicy()
    routing: Any = None
    """The raw ``routing`` object; ``GrayRelease`` checks it against the channels."""


def parse_notify_settings(section: Mapping[str, Any], languages: tuple[str, ...]) -> NotifySettings:
    field = "settings.notify"
    data = rules_object(
        section,
        allowed=("language", "console_url", "routing", *POLICY_LIMITS),
        required=(),
        field=field,
    )
    language = data.get("language", "zh")
    if language not in languages:
        raise ValidationError(
            f"{field}.language", f"must be one of {', '.join(languages)}", value=language
        )
    console_url = data.get("console_url")
    if console_url is not None and (
        not isinstance(console_url, str) or not console_url.startswith(("http://", "https://"))
    ):
        raise ValidationError(
            f"{field}.console_url",
            "must be the console's http(s) URL, as people open it",
            value=console_url,
        )
    return NotifySettings(
        language=language,
        console_url=console_url,
        policy=parse_policy(data, field),
        routing=data.get("routing"),
    )
