"""Which plan events go to which channels and people.

The installation's default routing comes from settings (``notify.routing``); a plan may
override any part of it with its own ``notify`` (``channels``, ``events``, ``recipients``,
``minSeverity``), field by field. Severities let an on-call channel take only what is
critical: ``"minSeverity": {"sms": "critical"}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from .errors import ValidationError
from .notify import Severity
from .rules import rules_object

EVENT_SEVERITY: Mapping[str, Severity] = MappingProxyType(
    {
        "CREATED": Severity.INFO,
        "UPDATED": Severity.INFO,
        "DELETED": Severity.INFO,
        "STARTED": Severity.INFO,
        "PAUSED": Severity.INFO,
        "RESUMED": Severity.INFO,
        "STEPPED": Severity.INFO,
        "PROMOTED": Severity.INFO,
        "COMPLETED": Severity.INFO,
        "ANALYSIS_PASSED": Severity.INFO,
        "APPROVED": Severity.INFO,
        "HELD": Severity.WARNING,
        "ANALYSIS_INCONCLUSIVE": Severity.WARNING,
        "ROLLED_BACK": Severity.WARNING,
        "REJECTED": Severity.WARNING,
        "ANALYSIS_FAILED": Severity.CRITICAL,
        "AUTO_ROLLBACK": Severity.CRITICAL,
        "START_FAILED": Severity.CRITICAL,
        "COMPLETE_FAILED": Severity.CRITICAL,
        "ROLLBACK_FAILED": Severity.CRITICAL,
    }
)
"""Every event a plan can raise, and how serious it is."""
DEFAULT_EVENTS = (
    "STARTED",
    "COMPLETED",
    "ROLLED_BACK",
    "AUTO_ROLLBACK",
    "ANALYSIS_FAILED",
    "START_FAILED",
    "COMPLETE_FAILED",
    "ROLLBACK_FAILED",
)
"""What is sent when nobody said: the steps people act on, and every failure."""
DEFAULT_CHANNELS = ("inbox",)
"""The in-system inbox needs no settings, so an installation has it from the start."""
MAX_RECIPIENTS = 50
MAX_RECIPIENT = 254
FIELDS = ("channels", "events", "recipients", "minSeverity")
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

RecipientCheck = Callable[[str], None]
"""``check(recipient)``: raises ``ValueError`` saying what is wrong with it."""


@attrs.frozen
class Routing:
    """A routing as given (settings' default, or a plan's override); ``None``: not given."""

    channels: tuple[str, ...] | None = None
    events: tuple[str, ...] | None = None
    recipients: Mapping[str, tuple[str, ...]] | None = None
    """Per channel: addresses, phone numbers, user ids (whatever the channel takes)."""
    min_severity: Mapping[str, Severity] | None = None
    """Per channel: the least serious event it takes."""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        if self.channels is not None:
            wire["channels"] = list(self.channels)
        if self.events is not None:
            wire["events"] = list(self.events)
        if self.recipients is not None:
            wire["recipients"] = {name: list(who) for name, who in self.recipients.items()}
        if self.min_severity is not None:
            wire["minSeverity"] = {name: s.value for name, s in self.min_severity.items()}
        return wire

    def over(self, default: Routing) -> Routing:
        """This routing with what it leaves out taken from ``default``; recipients and
        severities merge per channel."""
        return Routing(
            channels=self.channels if self.channels is not None else default.channels,
            events=self.events if self.events is not None else default.events,
            recipients={**(default.recipients or {}), **(self.recipients or {})},
            min_severity={**(default.min_severity or {}), **(self.min_severity or {})},
        )


def routing_from_json(raw: Mapping[str, Any] | None) -> Routing | None:
    """A stored routing (already validated when it was saved)."""
    if raw is None:
        return None
    return Routing(
        channels=tuple(raw["channels"]) if "channels" in raw else None,
        events=tuple(raw["events"]) if "events" in raw else None,
        recipients=(
            {name: tuple(who) for name, who in raw["recipients"].items()}
            if "recipients" in raw
            else None
        ),
        min_severity=(
            {name: Severity(s) for name, s in raw["minSeverity"].items()}
            if "minSeverity" in raw
            else None
        ),
    )


def parse_routing(
    raw: Any, field: str, *, channels: Mapping[str, RecipientCheck | None]
) -> Routing | None:
    """Check a routing field by field against the installed ``channels`` (name -> a check
    of one recipient, or ``None``); ``None`` or ``{}`` gives ``None`` (nothing overridden).
    """
    if raw is None:
        return None
    data = rules_object(raw, allowed=FIELDS, required=(), field=field)
    if not data:
        return None
    listed = None
    if "channels" in data:
        listed = _names(data["channels"], f"{field}.channels")
        for index, name in enumerate(listed):
            if name not in channels:
                raise _unknown_channel(f"{field}.channels[{index}]", name, channels)
    events = None
    if "events" in data:
        events = _names(data["events"], f"{field}.events")
        for index, name in enumerate(events):
            if name not in EVENT_SEVERITY:
                raise ValidationError(
                    f"{field}.events[{index}]",
                    "unknown event; events are " + ", ".join(EVENT_SEVERITY),
                    value=name,
                )
    recipients = None
    if "recipients" in data:
        recipients = {}
        for name, who in _per_channel(data["recipients"], f"{field}.recipients", channels):
            recipients[name] = _recipients(who, f"{field}.recipients.{name}", channels[name])
    severities = None
    if "minSeverity" in data:
        severities = {}
        for name, value in _per_channel(data["minSeverity"], f"{field}.minSeverity", channels):
            if value not in _RANK:
                raise ValidationError(
                    f"{field}.minSeverity.{name}", "must be info, warning or critical", value=value
                )
            severities[name] = Severity(value)
    return Routing(listed, events, recipients, severities)


def route(
    action: str,
    routing: Routing,
    *,
    author: str | None,
    needs_recipients: Callable[[str], bool],
) -> list[tuple[str, tuple[str, ...]]]:
    """``[(channel, recipients)]`` that an ``action`` goes to under the effective ``routing``.

    The inbox goes to the plan's ``author`` when it names nobody. A channel that needs
    recipients (mail, SMS) and has none is skipped (``check_routing`` refuses that up front).
    """
    severity = severity_of(action)
    if action not in (routing.events if routing.events is not None else DEFAULT_EVENTS):
        return []
    targets = []
    for channel in routing.channels if routing.channels is not None else DEFAULT_CHANNELS:
        least = (routing.min_severity or {}).get(channel, Severity.INFO)
        if _RANK[severity] < _RANK[least]:
            continue
        recipients = (routing.recipients or {}).get(channel, ())
        if not recipients and channel == "inbox" and author:
            recipients = (author,)
        if not recipients and needs_recipients(channel):
            continue
        targets.append((channel, recipients))
    return targets


def check_routing(routing: Routing, field: str, *, needs_recipients: Callable[[str], bool]) -> None:
    """Refuse an effective routing that names a channel which cannot send without recipients
    (mail, SMS) and gives it none: found when the plan is saved, not at the first alert."""
    channels = routing.channels if routing.channels is not None else DEFAULT_CHANNELS
    for channel in channels:
        if needs_recipients(channel) and not (routing.recipients or {}).get(channel):
            raise ValidationError(
                f"{field}.recipients.{channel}",
                f"is required: the {channel} channel has nobody to send to",
            )


def severity_of(action: str) -> Severity:
    return EVENT_SEVERITY.get(action, Severity.INFO)


def _names(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(field, "must be a list of names", value=type(value).__name__)
    if len(set(value)) != len(value):
        raise ValidationError(field, "names a value twice")
    return tuple(value)


def _per_channel(value: Any, field: str, channels: Mapping[str, object]) -> list[tuple[str, Any]]:
    if not isinstance(value, Mapping):
        raise ValidationError(
            field, "must be an object keyed by channel name", value=type(value).__name__
        )
    for name in value:
        if name not in channels:
            raise _unknown_channel(f"{field}.{name}", name, channels)
    return list(value.items())


def _unknown_channel(field: str, name: str, channels: Mapping[str, object]) -> ValidationError:
    known = ", ".join(sorted(channels)) or "(none configured)"
    return ValidationError(
        field,
        f"no such channel is configured; configured channels are {known}",
        value=name,
    )


def _recipients(value: Any, field: str, check: RecipientCheck | None) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValidationError(field, "must be a list", value=type(value).__name__)
    if len(value) > MAX_RECIPIENTS:
        raise ValidationError(field, f"must list at most {MAX_RECIPIENTS}", value=len(value))
    result = []
    for index, who in enumerate(value):
        item = f"{field}[{index}]"
        if not isinstance(who, str) or not who.strip():
            raise ValidationError(item, "must be a non-empty string", value=who)
        if len(who) > MAX_RECIPIENT or any(ch < " " for ch in who):
            raise ValidationError(item, f"must be one line of at most {MAX_RECIPIENT} characters")
        if check is not None:
            try:
                check(who.strip())
            except ValueError as exc:
                raise ValidationError(item, str(exc), value=who) from None
        result.append(who.strip())
    return tuple(result)
