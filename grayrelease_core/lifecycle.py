"""The plan state machine: which action is allowed from which state, and where it leads."""

from __future__ import annotations

import enum

from .errors import InvalidTransition
from .models import PlanStatus

D, A, P, C, R = (
    PlanStatus.DRAFT,
    PlanStatus.ACTIVE,
    PlanStatus.PAUSED,
    PlanStatus.COMPLETED,
    PlanStatus.ROLLBACK,
)


class Action(enum.StrEnum):
    """Operator actions on a plan (also the names passed to ``grayrelease_authorize``)."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    COMPLETE = "complete"
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    REPORT = "report-metrics"
    """Push metric samples for a plan (no state change)."""
    VIEW = "view"
    """Read plans, their logs, instances, metrics and notifications."""
    APPROVE = "approve"
    REJECT = "reject"
    GRANT = "grant"
    """Manage who may do what (grants, other actors' tokens)."""
    AUDIT = "audit"
    """Check the audit chain."""
    SCHEDULE_START = "schedule-start"
    """Set a DRAFT's ``startAt``: the ticker will start it in this actor's name."""
    AUTO_COMPLETE = "auto-complete"
    """Arm a stepped plan's automatic completion: the ticker will complete it in this
    actor's name."""
    WRITE_CONFIG = "write-config"
    """Write a config value directly (a host's own config API, such as the demo's)."""


TRANSITIONS: dict[Action, tuple[frozenset[PlanStatus], PlanStatus | None]] = {
    Action.UPDATE: (frozenset({D}), D),
    Action.DELETE: (frozenset({D}), None),
    Action.START: (frozenset({D}), A),
    Action.PAUSE: (frozenset({A}), P),
    Action.RESUME: (frozenset({P}), A),
    Action.PROMOTE: (frozenset({A}), A),
    Action.COMPLETE: (frozenset({A, P}), C),
    Action.ROLLBACK: (frozenset({A, P, C}), R),
}
"""``action -> (states it is allowed from, state it leads to)``; delete leads nowhere."""


def allowed_actions(status: PlanStatus) -> list[str]:
    """The actions the state machine allows from ``status``, in a stable order."""
    return [action.value for action, (sources, _) in TRANSITIONS.items() if status in sources]


def target(action: Action, status: PlanStatus) -> PlanStatus | None:
    """Where ``action`` leads from ``status``; an ``InvalidTransition`` if it is not allowed."""
    sources, destination = TRANSITIONS[action]
    if status not in sources:
        allowed = allowed_actions(status)
        raise InvalidTransition(
            f"cannot {action.value} a plan that is {status.value}; "
            + (f"allowed now: {', '.join(allowed)}" if allowed else "no action is allowed now"),
            details={"action": action.value, "status": status.value, "allowedActions": allowed},
        )
    return destination
