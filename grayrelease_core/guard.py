"""Guarded by default: the checks a plan gets when it brings none (``settings.analysis``).

An operator names, per app and environment, the automatic-rollback rules every new plan
there gets unless its body says otherwise::

    analysis:
      defaults:
        - environment: prod            # every app in prod ("*" or omitted: any)
          autoRollback:
            checks: [{metric: errorRate, maxIncrease: 0.2, measure: rate}]
        - appName: payment
          environment: prod            # the most specific entry wins
          autoRollback: {checks: [...], failureThreshold: 1}

A body without ``autoRollback`` gets the matching entry's rules (the CREATED row names the
entry); a body with ``"autoRollback": null`` opts out, and the audit row says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .checks import AutoRollback, parse_auto_rollback
from .errors import ValidationError

SECTION = "analysis"
ANY = "*"


@attrs.frozen
class DefaultChecks:
    """One ``settings.analysis.defaults`` entry."""

    index: int
    app_name: str
    environment: str
    auto_rollback: AutoRollback

    @property
    def field(self) -> str:
        return f"settings.{SECTION}.defaults[{self.index}]"

    def matches(self, app_name: str, environment: str) -> bool:
        return self.app_name in (ANY, app_name) and self.environment in (ANY, environment)

    @property
    def specificity(self) -> int:
        """App and environment named beat app named beat environment named beat neither."""
        return 2 * (self.app_name != ANY) + (self.environment != ANY)


@attrs.frozen
class AnalysisDefaults:
    entries: tuple[DefaultChecks, ...] = ()

    def for_scope(self, app_name: str, environment: str) -> DefaultChecks | None:
        """The most specific entry that applies (the first of equals), or ``None``."""
        found = [entry for entry in self.entries if entry.matches(app_name, environment)]
        if not found:
            return None
        return max(found, key=lambda entry: (entry.specificity, -entry.index))


def parse_analysis_defaults(section: Mapping[str, Any]) -> AnalysisDefaults:
    """``settings.analysis``; each error names the setting it is about."""
    unknown = sorted(str(key) for key in section if key != "defaults")
    if unknown:
        raise ValidationError(f"settings.{SECTION}.{unknown[0]}", "unknown setting")
    raw = section.get("defaults", [])
    if not isinstance(raw, list):
        raise ValidationError(f"settings.{SECTION}.defaults", "must be a list of entries")
    entries = []
    for index, item in enumerate(raw):
        field = f"settings.{SECTION}.defaults[{index}]"
        if not isinstance(item, Mapping):
            raise ValidationError(field, "must be an object with autoRollback")
        extra = sorted(
            str(key) for key in item if key not in ("appName", "environment", "autoRollback")
        )
        if extra:
            raise ValidationError(f"{field}.{extra[0]}", "unknown field")
        names = {}
        for name in ("appName", "environment"):
            value = item.get(name, ANY)
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"{field}.{name}", 'must be a name or "*"', value=value)
            names[name] = value.strip()
        if item.get("autoRollback") is None:
            raise ValidationError(f"{field}.autoRollback", "is required")
        try:
            rules = parse_auto_rollback(item["autoRollback"])
        except ValidationError as error:
            raise ValidationError(f"{field}.{error.field}", error.problem) from None
        assert rules is not None
        entries.append(DefaultChecks(index, names["appName"], names["environment"], rules))
    return AnalysisDefaults(tuple(entries))
