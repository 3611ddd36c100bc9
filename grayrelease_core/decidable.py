"""Warnings for checks a plan can never decide, told when the plan is created, edited, viewed
or started rather than found out when it holds for good.

The judge never passes on missing data (:mod:`grayrelease_core.judge`), so a check that can
never have its data holds a stepped plan forever. Two shapes are known in advance:

- a relative value check needs ``minSamples`` gray instances reporting; a canary stage that
  names fewer canary instances cannot give them (unless several instances share an address);
- at 100% no baseline is left, so relative checks are skipped there; a plan that completes by
  itself at ``maxPercentage`` 100 needs an absolute check to pass at the top.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .checks import AUTO_ROLLBACK
from .models import Plan
from .strategy import StepSchedule


@attrs.frozen
class PlanWarning:
    """Something about a plan that will not work as its author probably expects."""

    code: str
    """Stable, for the console's translations: ``FEW_CANARIES``, ``NO_COMPLETION``."""
    field: str
    """The request field it is about."""
    message: str
    """English; the console shows its own language from ``code`` and ``params``."""
    params: Mapping[str, Any] = attrs.field(factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "field": self.field,
            "message": self.message,
            "params": dict(self.params),
        }


def undecidable(plan: Plan, schedule: StepSchedule | None) -> tuple[PlanWarning, ...]:
    """What the plan's checks cannot decide, given its step schedule (none: not stepped)."""
    rules = plan.auto_rollback
    if rules is None or not rules.checks or schedule is None:
        return ()
    warnings = []
    canaries = schedule.first_stage
    for index, check in enumerate(rules.checks):
        if check.max_increase is None or check.is_rate:
            continue
        if canaries is not None and canaries < check.min_samples:
            warnings.append(
                PlanWarning(
                    "FEW_CANARIES",
                    f"{AUTO_ROLLBACK}.checks[{index}].minSamples",
                    f"{check.metric}: a relative check needs minSamples {check.min_samples} "
                    f"gray instances reporting, and the canary stage names {canaries}: unless "
                    "several instances share those addresses, it cannot decide and the plan "
                    'holds at the canary stage. Count errors with "measure": "rate" (requests '
                    "are pooled, so one instance is enough), lower minSamples, or name more "
                    "canary instances.",
                    {"metric": check.metric, "minSamples": check.min_samples, "canaries": canaries},
                )
            )
    absolute = any(check.max_increase is None for check in rules.checks)
    if schedule.auto_complete and schedule.max_percentage >= 100 and not absolute:
        warnings.append(
            PlanWarning(
                "NO_COMPLETION",
                f"{AUTO_ROLLBACK}.checks",
                "autoComplete at maxPercentage 100 with relative checks only: at 100% no "
                "baseline is left to compare with, no analysis can pass there, and the plan "
                "will not complete by itself. Add an absolute check (a threshold), or set "
                "maxPercentage below 100.",
                {"maxPercentage": schedule.max_percentage},
            )
        )
    return tuple(warnings)
