"""Input limits an installation may lower: how many keys a plan holds, how long a whitelist
or a name may be, how large a value.

The built-in maxima are the ceilings (the database columns and the OpenAPI document are sized
for them); the ``limits`` settings section sets lower ones. A plan over a limit is refused with
a 400 that names the field and the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .errors import ValidationError
from .rules import MAX_LIST, rules_object
from .wire import MAX_DESCRIPTION, MAX_KEYS, MAX_NAME, MAX_VALUE

CEILINGS: Mapping[str, int] = {
    "keys_per_plan": MAX_KEYS,
    "list_items": MAX_LIST,
    "name_length": MAX_NAME,
    "value_length": MAX_VALUE,
    "description_length": MAX_DESCRIPTION,
}


@attrs.frozen
class Limits:
    """The limits in force (the ceilings unless lowered)."""

    keys_per_plan: int = MAX_KEYS
    list_items: int = MAX_LIST
    """Entries of any list in a plan's rules: IP and user whitelists, canary instances."""
    name_length: int = MAX_NAME
    """Characters of a plan's name, app, environment and group."""
    value_length: int = MAX_VALUE
    """Characters of a gray value."""
    description_length: int = MAX_DESCRIPTION

    def check_plan(self, fields: Mapping[str, Any], rules: Mapping[str, Any] | None) -> None:
        """Refuse a parsed plan body (and its normalized rules) that goes over a limit."""
        keys = fields.get("configKeys")
        if keys is not None and len(keys) > self.keys_per_plan:
            _over("configKeys", "keys_per_plan", self.keys_per_plan, len(keys), "keys")
        for name in ("planName", "appName", "environment", "groupName"):
            value = fields.get(name)
            if value is not None and len(value) > self.name_length:
                _over(name, "name_length", self.name_length, len(value), "characters")
        description = fields.get("description")
        if description and len(description) > self.description_length:
            _over(
                "description",
                "description_length",
                self.description_length,
                len(description),
                "characters",
            )
        for key, value in (fields.get("grayValues") or {}).items():
            if len(value) > self.value_length:
                _over(
                    f"grayValues.{key}", "value_length", self.value_length, len(value), "characters"
                )
        if rules is not None:
            self._check_lists(rules, "grayRules")

    def _check_lists(self, value: Any, field: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                self._check_lists(item, f"{field}.{key}")
        elif isinstance(value, list | tuple) and len(value) > self.list_items:
            _over(field, "list_items", self.list_items, len(value), "entries")


def _over(field: str, limit: str, maximum: int, actual: int, unit: str) -> None:
    raise ValidationError(
        field,
        f"must have at most {maximum} {unit} (the installation's limit {limit})",
        value=actual,
        details={"limit": limit, "maximum": maximum},
    )


def parse_limits(section: Mapping[str, Any]) -> Limits:
    """The ``limits`` settings section, each limit a whole number up to its ceiling."""
    field = "settings.limits"
    data = rules_object(section, allowed=tuple(CEILINGS), required=(), field=field)
    values: dict[str, int] = {}
    for name, value in data.items():
        ceiling = CEILINGS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
            raise ValidationError(
                f"{field}.{name}", f"must be a whole number from 1 to {ceiling}", value=value
            )
        values[name] = value
    return Limits(**values)
